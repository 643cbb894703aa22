"""A local project directory with an in-tree PEP 517/660 backend (stdlib only): pip builds it offline."""

from __future__ import annotations

from pathlib import Path

_BACKEND = '''
import base64, hashlib, os, zipfile
HERE = os.path.dirname(os.path.abspath(__file__))
NAME, VERSION = {name!r}, {version!r}

def _wheel(directory, files):
    dist = NAME + "-" + VERSION
    files = dict(files)
    files[dist + ".dist-info/METADATA"] = "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION)
    files[dist + ".dist-info/WHEEL"] = "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = []
    name = dist + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        for n, text in files.items():
            data = text.encode()
            z.writestr(n, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (n, digest, len(data)))
        record.append(dist + ".dist-info/RECORD,,")
        z.writestr(dist + ".dist-info/RECORD", "\\n".join(record) + "\\n")
    return name

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(os.path.join(HERE, NAME, "__init__.py")) as f:
        return _wheel(wheel_directory, {{NAME + "/__init__.py": f.read()}})

def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {{"_" + NAME + "_editable.pth": HERE + "\\n"}})
'''


def make_project(root: Path, name: str, version: str) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n')
    (root / "backend.py").write_text(_BACKEND.format(name=name, version=version))
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(f"__version__ = {version!r}\n")
    return root
