"""What this interpreter is, for installing: wheel tags, marker environment, key, paths.

Standard library only, and kept parseable by old interpreters (3.7: no walrus, no ``match``),
because it runs in two ways:

- imported, for the running interpreter (``omnipkg_pip.pythons.interp.current()``);
- as a script, ``python -I -S .../omnipkg_hook/_tags.py``, inside *another* interpreter,
  which then has nothing but its own standard library on ``sys.path`` (``-I`` keeps the
  script's directory off it, ``-S`` its site-packages). It prints :func:`facts` as JSON.

:func:`sys_tags` gives the list ``packaging.tags.sys_tags()`` (26.3 and later) gives, in
the same order, for CPython and the generic case on Linux (manylinux from the glibc
version, musllinux from the musl loader named in the executable's ELF header, as
packaging detects them), macOS and other platforms; ``tests/hook/test_tags.py`` checks it
against each installed interpreter's own ``packaging``.
"""

import os
import platform
import re
import struct
import sys
import sysconfig

__all__ = ["sys_tags", "marker_environment", "interpreter_key", "facts"]

_SHORT = {"python": "py", "cpython": "cp", "pypy": "pp", "ironpython": "ip", "jython": "jy"}
_32BIT = struct.calcsize("P") == 4
_MANYLINUX_ARCHS = {"x86_64", "aarch64", "ppc64", "ppc64le", "s390x", "loongarch64", "riscv64"}
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def _norm(s):
    return s.replace(".", "_").replace("-", "_").replace(" ", "_")


def _nodot(version):
    return "".join(map(str, version))


def interpreter_name():
    name = sys.implementation.name
    return _SHORT.get(name) or name


def interpreter_version():
    v = sysconfig.get_config_var("py_version_nodot")
    return str(v) if v else _nodot(sys.version_info[:2])


def _cpython_abis(py):
    version = _nodot(py[:2])
    debug = threading = ""
    with_debug = sysconfig.get_config_var("Py_DEBUG")
    from importlib.machinery import EXTENSION_SUFFIXES

    if with_debug or (with_debug is None and (hasattr(sys, "gettotalrefcount") or "_d.pyd" in EXTENSION_SUFFIXES)):
        debug = "d"
    if py >= (3, 13) and sysconfig.get_config_var("Py_GIL_DISABLED"):
        threading = "t"
    abis = [f"cp{version}{threading}{debug}"]
    if debug:
        abis.append(f"cp{version}{threading}")
    return abis


def _generic_abi():
    ext = sysconfig.get_config_var("EXT_SUFFIX")
    if not isinstance(ext, str) or not ext.startswith("."):
        raise SystemError("invalid sysconfig.get_config_var('EXT_SUFFIX')")
    parts = ext.split(".")
    if len(parts) < 3:
        return _cpython_abis(sys.version_info[:2])
    soabi = parts[1]
    if soabi.startswith("cpython"):
        abi = "cp" + soabi.split("-")[1]
    elif soabi.startswith("cp"):
        abi = soabi.split("-")[0]
    elif soabi.startswith("pypy"):
        abi = "-".join(soabi.split("-")[:2])
    elif soabi.startswith("graalpy"):
        abi = "-".join(soabi.split("-")[:3])
    elif soabi:
        abi = soabi
    else:
        return []
    return [_norm(abi)]


# -- Linux: manylinux (glibc) and musllinux (musl) ------------------------------------

def _elf(path):
    """(class, data, machine, flags, PT_INTERP or None) of an ELF file, or None."""
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if ident[:4] != b"\x7fELF":
                return None
            e_fmt, p_fmt, idx = {
                (1, 1): ("<HHIIIIIHHH", "<IIIIIIII", (0, 1, 4)),
                (1, 2): (">HHIIIIIHHH", ">IIIIIIII", (0, 1, 4)),
                (2, 1): ("<HHIQQQIHHH", "<IIQQQQQQ", (0, 2, 5)),
                (2, 2): (">HHIQQQIHHH", ">IIQQQQQQ", (0, 2, 5)),
            }[(ident[4], ident[5])]
            head = struct.unpack(e_fmt, f.read(struct.calcsize(e_fmt)))
            machine, phoff, flags, phentsize, phnum = head[1], head[4], head[6], head[8], head[9]
            interp = None
            for i in range(phnum):
                f.seek(phoff + phentsize * i)
                try:
                    ph = struct.unpack(p_fmt, f.read(struct.calcsize(p_fmt)))
                except struct.error:
                    continue
                if ph[idx[0]] == 3:  # PT_INTERP
                    f.seek(ph[idx[1]])
                    interp = os.fsdecode(f.read(ph[idx[2]])).strip("\0")
                    break
            return ident[4], ident[5], machine, flags, interp
    except (OSError, KeyError, struct.error, TypeError, ValueError):
        return None


def _glibc_version():
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
        version = text.rsplit()[1] if text else None
    except (AttributeError, OSError, ValueError, IndexError):
        version = None
    if version is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None).gnu_get_libc_version
            fn.restype = ctypes.c_char_p
            version = fn()
            if isinstance(version, bytes):
                version = version.decode("ascii")
        except (ImportError, OSError, AttributeError):
            return (-1, -1)
    m = re.match(r"([0-9]+)\.([0-9]+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (-1, -1)


def _manylinux_module():
    try:
        return __import__("_manylinux")
    except ImportError:
        return None


def _glibc_compatible(arch, version, glibc, mod):
    if glibc < version:
        return False
    if mod is None:
        return True
    if hasattr(mod, "manylinux_compatible"):
        result = mod.manylinux_compatible(version[0], version[1], arch)
        return True if result is None else bool(result)
    legacy = {(2, 5): "manylinux1_compatible", (2, 12): "manylinux2010_compatible",
              (2, 17): "manylinux2014_compatible"}.get(version)
    if legacy and hasattr(mod, legacy):
        return bool(getattr(mod, legacy))
    return True


def _manylinux(archs, elf, glibc=None):
    if "armv7l" in archs:
        ok = elf is not None and elf[:3] == (1, 1, 40) and (
            elf[3] & 0xFF000000 == 0x05000000 and elf[3] & 0x400 == 0x400)
    elif "i686" in archs:
        ok = elf is not None and elf[:3] == (1, 1, 3)
    else:
        ok = any(a in _MANYLINUX_ARCHS for a in archs)
    if not ok:
        return
    too_old = (2, 4) if set(archs) & {"x86_64", "i686"} else (2, 16)
    glibc = _glibc_version() if glibc is None else glibc
    mod = _manylinux_module()
    maxima = [glibc] + [(major, 50) for major in range(glibc[0] - 1, 1, -1)]
    for arch in archs:
        for major, top in maxima:
            low = too_old[1] if major == too_old[0] else -1
            for minor in range(top, low, -1):
                if _glibc_compatible(arch, (major, minor), glibc, mod):
                    yield f"manylinux_{major}_{minor}_{arch}"
                    legacy = _LEGACY_MANYLINUX.get((major, minor))
                    if legacy:
                        yield f"{legacy}_{arch}"


def _musl_version(elf):
    ld = elf[4] if elf else None
    if not ld or "musl" not in ld:
        return None
    import subprocess

    try:
        err = subprocess.run([ld], stderr=subprocess.PIPE, text=True).stderr
    except OSError:
        return None
    return _parse_musl(err)


def _parse_musl(err):
    lines = [n for n in (n.strip() for n in err.splitlines()) if n]
    if len(lines) < 2 or lines[0][:4] != "musl":
        return None
    m = re.match(r"Version (\d+)\.(\d+)", lines[1])
    return (int(m.group(1)), int(m.group(2))) if m else None


def _linux_platforms():
    linux = _norm(sysconfig.get_platform())
    if not linux.startswith("linux_"):
        yield linux
        return
    if _32BIT:
        linux = {"linux_x86_64": "linux_i686", "linux_aarch64": "linux_armv8l"}.get(linux, linux)
    arch = linux.split("_", 1)[1]
    archs = {"armv8l": ["armv8l", "armv7l"]}.get(arch, [arch])
    for a in archs:
        yield "linux_" + a
    elf = _elf(sys.executable)
    yield from _manylinux(archs, elf)
    musl = _musl_version(elf)
    if musl is not None:
        for a in archs:
            for minor in range(musl[1], -1, -1):
                yield f"musllinux_{musl[0]}_{minor}_{a}"


# -- macOS ------------------------------------------------------------------------------

def _mac_formats(version, arch):
    formats = [arch]
    if arch == "x86_64":
        if version < (10, 4):
            return []
        formats.extend(["intel", "fat64", "fat3"])
    elif arch == "i386":
        if version < (10, 4):
            return []
        formats.extend(["intel", "fat3", "fat"])
    elif arch == "ppc64":
        if version > (10, 5) or version < (10, 4):
            return []
        formats.append("fat64")
    elif arch == "ppc":
        if version > (10, 6):
            return []
        formats.extend(["fat3", "fat"])
    if arch in {"arm64", "x86_64"}:
        formats.append("universal2")
    if arch in {"x86_64", "i386", "ppc64", "ppc", "intel"}:
        formats.append("universal")
    return formats


def _mac_platforms(version=None, arch=None):
    release, _, machine = platform.mac_ver() if version is None or arch is None else ("", "", "")
    if version is None:
        version = tuple(map(int, release.split(".")[:2]))
        if version == (10, 16):  # built against an old SDK: ask without the compatibility shim
            import subprocess

            release = subprocess.run(
                [sys.executable, "-sS", "-c", "import platform; print(platform.mac_ver()[0])"],
                check=True, env={"SYSTEM_VERSION_COMPAT": "0"}, stdout=subprocess.PIPE,
                text=True).stdout
            version = tuple(map(int, release.split(".")[:2]))
    if arch is None:
        arch = machine if not _32BIT else ("ppc" if machine.startswith("ppc") else "i386")
    if (10, 0) <= version < (11, 0):
        for minor in range(version[1], -1, -1):
            for fmt in _mac_formats((10, minor), arch):
                yield f"macosx_10_{minor}_{fmt}"
    if version >= (11, 0):
        for major in range(version[0], 10, -1):
            for fmt in _mac_formats((major, 0), arch):
                yield f"macosx_{major}_0_{fmt}"
        for minor in range(16, 3, -1):
            for fmt in _mac_formats((10, minor), arch) if arch == "x86_64" else ["universal2"]:
                yield f"macosx_10_{minor}_{fmt}"


def platform_tags():
    system = platform.system()
    if system == "Darwin":
        return list(_mac_platforms())
    if system == "Linux":
        return list(_linux_platforms())
    if system == "Emscripten":
        v = sysconfig.get_config_var("PYEMSCRIPTEN_PLATFORM_VERSION")
        return ([f"pyemscripten_{v}_wasm32"] if v else []) + [_norm(sysconfig.get_platform())]
    return [_norm(sysconfig.get_platform())]


# -- the tag list -----------------------------------------------------------------------

def _py_range(py):
    yield "py" + _nodot(py[:2])
    yield f"py{py[0]}"
    for minor in range(py[1] - 1, -1, -1):
        yield "py" + _nodot((py[0], minor))


def sys_tags():
    """The wheel tags this interpreter installs, best first, as strings (``cp311-cp311-...``)."""
    py = tuple(sys.version_info[:2])
    plats = platform_tags()
    out = []
    name = interpreter_name()
    if name == "cp":
        interp = "cp" + _nodot(py)
        abis = _cpython_abis(py)
        threaded = "t" in abis[0][len(interp):]
        for abi in abis:
            out.extend(f"{interp}-{abi}-{p}" for p in plats)
        if threaded:
            out.extend(f"{interp}-abi3t-{p}" for p in plats)
        else:
            out.extend(f"{interp}-abi3-{p}" for p in plats)
        out.extend(f"{interp}-none-{p}" for p in plats)
        stable = "abi3t" if threaded else "abi3"
        for minor in range(py[1] - 1, 1, -1):
            out.extend(f"cp{_nodot((py[0], minor))}-{stable}-{p}" for p in plats)
        compat_interp = "cp" + interpreter_version()
    else:
        interp = name + interpreter_version()
        abis = _generic_abi()
        if "none" not in abis:
            abis.append("none")
        for abi in abis:
            out.extend(f"{interp}-{abi}-{p}" for p in plats)
        compat_interp = "pp3" if name == "pp" else None
    for version in _py_range(py):
        out.extend(f"{version}-none-{p}" for p in plats)
    if compat_interp:
        out.append(compat_interp + "-none-any")
    out.extend(v + "-none-any" for v in _py_range(py))
    return [t.lower() for t in out]


def _full_version(info):
    v = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        v += info.releaselevel[0] + str(info.serial)
    return v


def marker_environment():
    """The PEP 508 marker environment (``packaging.markers.default_environment()``)."""
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": _full_version(sys.implementation.version),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def interpreter_key():
    """``cpython-311-linux-x86_64`` (see ``omnipkg_hook.store.interpreter_key``)."""
    machine = os.uname().machine if hasattr(os, "uname") else os.environ.get("PROCESSOR_ARCHITECTURE", "unknown")
    abiflags = getattr(sys, "abiflags", "").replace("m", "")
    return f"{sys.implementation.cache_tag}{abiflags}-{sys.platform}-{machine.lower()}"


def facts(tags=True):
    """Everything :class:`omnipkg_pip.pythons.interp.Interpreter` holds, as plain data."""
    return {
        "executable": sys.executable,
        "version": platform.python_version(),
        "version_info": list(sys.version_info[:2]),
        "cache_tag": sys.implementation.cache_tag,
        "key": interpreter_key(),
        "markers": marker_environment(),
        "tags": sys_tags() if tags and sys.version_info >= (3, 9) else None,
        "purelib": sysconfig.get_paths()["purelib"],
        "prefix": sys.prefix,
    }


if __name__ == "__main__":
    import json

    sys.stdout.write(json.dumps(facts()) + "\n")
