"""The one door to pip: every pip run goes through :func:`run_pip`.

pip is always a subprocess (``python -m pip``; pip forbids in-process use), with
``--no-input``, a cleaned environment (no ``PYTHONPATH``, ``PIP_TARGET``, pins...),
and the user's own pip configuration (index, auth, certificates) left intact.
The full output goes to a log file (:mod:`omnipkg_pip.locations`); on failure the
user gets pip's first ``ERROR:`` line, the lines pip gives as the reason (``The
conflict is caused by:`` and what follows it), and the log's path.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from omnipkg_hook.errors import PipError

from . import progress

__all__ = ["PipResult", "run_pip", "dry_run_report", "target_python", "log_dir", "passthrough", "capture"]

# Variables that would make pip install somewhere else or change what Python runs.
_STRIP_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PIP_TARGET",
    "PIP_PREFIX",
    "PIP_ROOT",
    "PIP_USER",
    "PIP_REQUIRE_VIRTUALENV",
    "PIP_PYTHON",
    "OMNIPKG_PINS",
    "__PYVENV_LAUNCHER__",
)


def target_python() -> str:
    """The interpreter of the main environment (``interpreters.main_python``), not probed."""
    from omnipkg_hook.store import Store

    from .pythons.interpreters import main_python

    return main_python(Store())[0]


def log_dir() -> str:
    from .locations import log_dir

    return log_dir()


def passthrough(argv: list[str], python: str | None = None) -> int:
    """Hand ``argv`` to pip as it is, for the main environment (or ``python``'s); pip's exit status."""
    return subprocess.call([*_pip_command(python or target_python()), *argv])


def _clean_env() -> dict[str, str]:
    """The environment of every pip subprocess: none of the user's pins reach pip or the build
    backends pip starts (no ``OMNIPKG_PINS``, no pinned bubble's ``bin`` on ``PATH``)."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
    store = os.environ.get("OMNIPKG_STORE")
    if store and env.get("PATH"):
        bubbles = os.path.join(os.path.abspath(store), "bin") + os.sep
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(bubbles))
    env["PIP_NO_INPUT"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@functools.cache
def _has_pip(python: str) -> bool:
    if os.path.abspath(python) == os.path.abspath(sys.executable):  # not realpath: venvs link one binary
        return True
    probe = subprocess.run([python, "-c", "import importlib.util as u; raise SystemExit(u.find_spec('pip') is None)"],
                           capture_output=True, env=_clean_env())
    return probe.returncode == 0


def _pip_command(python: str) -> list[str]:
    """``python -m pip``; for an interpreter without pip, our pip acting on it (``--python``)."""
    if _has_pip(python):
        return [python, "-m", "pip"]
    return [sys.executable, "-m", "pip", "--python", python]


@dataclass
class PipResult:
    returncode: int
    output: str
    log: str


def _new_log(what: str) -> str:
    from omnipkg_hook.store import makedirs  # 0755 whatever the umask

    directory = log_dir()
    makedirs(directory)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = "".join(c if c.isalnum() else "-" for c in what)[:40]
    path = os.path.join(directory, f"pip-{stamp}-{os.getpid()}-{slug}.log")
    _prune_logs(directory)
    return path


def _prune_logs(directory: str, keep: int = 50) -> None:
    try:
        logs = sorted(
            (os.path.join(directory, n) for n in os.listdir(directory) if n.startswith("pip-")),
            key=os.path.getmtime,
        )
    except OSError:
        return
    for old in logs[:-keep]:
        try:
            os.unlink(old)
        except OSError:
            pass


_NO_SPACE = ("[Errno 28]", "[Errno 122]")  # how pip reports ENOSPC, EDQUOT


def run_pip(python: str, args: list[str], *, what: str, verbose: int = 0, check: bool = True,
            hold=None) -> PipResult:
    """Run ``python -m pip <args>``; ``what`` names the step for progress and errors.

    With ``check`` a non-zero exit raises :class:`PipError` with pip's own reason.
    ``hold``: a :class:`omnipkg_hook.store.DownloadDir` pip writes into; pip inherits the
    descriptor that holds it, so gc leaves it alone while pip lives, even if we are killed.
    """
    cmd = [*_pip_command(python), "--no-input", "--disable-pip-version-check", *args]
    log = _new_log(what)
    lines: list[str] = []
    with open(log, "w", encoding="utf-8") as logf, progress.step(what, verbose=verbose):
        logf.write("$ " + " ".join(cmd) + "\n")
        logf.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            text=True,
            errors="replace",
            pass_fds=(hold.fd,) if hold is not None and hold.fd >= 0 else (),
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            logf.write(line)
            lines.append(line)
            if verbose:
                sys.stderr.write(line)
        returncode = proc.wait()
        logf.write(f"[exit {returncode}]\n")
    result = PipResult(returncode, "".join(lines), log)
    if returncode != 0 and hold is not None and any(m in ln for ln in lines for m in _NO_SPACE):
        import errno

        from omnipkg_hook.store import store_oserror  # pip filled the store's filesystem, in tmp/

        raise store_oserror(hold.store.root, OSError(errno.ENOSPC, "no space", hold.path))
    if check and returncode != 0:
        headline, details = _reason(lines)
        message = f"pip could not {what}: {headline}" + "".join(f"\n    {d}" for d in details)
        raise PipError(message, f"full pip output: {log}", log=log)
    return result


def capture(python: str, args: list[str], *, what: str) -> str:
    """pip's stdout alone (for ``--format=json`` and the like); failure as :func:`run_pip`'s."""
    cmd = [*_pip_command(python), "--no-input", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                          env=_clean_env())
    if proc.returncode != 0:
        log = _new_log(what)
        with open(log, "w", encoding="utf-8") as f:
            f.write("$ " + " ".join(cmd) + "\n" + proc.stdout + proc.stderr + f"[exit {proc.returncode}]\n")
        headline, details = _reason(proc.stderr.splitlines(keepends=True) or proc.stdout.splitlines(keepends=True))
        raise PipError(f"pip could not {what}: {headline}" + "".join(f"\n    {d}" for d in details),
                       f"full pip output: {log}", log=log)
    return proc.stdout


def _reason(lines: list[str]) -> tuple[str, list[str]]:
    """pip's headline (its first ``ERROR:`` line, shortened) and the lines it gives as the reason.

    The reason lines are the blocks pip introduces with a line ending in ``:`` and indents
    (``The conflict is caused by:`` and the requirements under it), at most 12 lines.
    """
    errors = [ln.strip()[len("ERROR:"):].strip() for ln in lines if ln.startswith("ERROR:")]
    errors = [e for e in errors if e]
    if not errors:
        tail = [ln.strip() for ln in lines if ln.strip()]
        errors = tail[-1:] or ["no output"]
    headline = errors[0] if len(errors[0]) <= 300 else errors[0][:297] + "..."
    details: list[str] = []
    for i, ln in enumerate(lines):
        text = ln.rstrip()
        if (not text.endswith(":") or text[:1].isspace() or text.startswith(("ERROR", "WARNING", "DEPRECATION"))
                or i + 1 >= len(lines) or not lines[i + 1][:1].isspace()):
            continue
        details.append(text)
        for follow in lines[i + 1:]:
            if not follow[:1].isspace() or not follow.strip():
                break
            details.append("  " + follow.strip())
    if len(errors) > 1 and errors[1] not in details:
        details.append(errors[1])
    return headline, details[:12]


def dry_run_report(python: str, args: list[str], *, what: str, verbose: int = 0, hold=None) -> dict:
    """What ``pip install`` would do: pip's installation report (``--dry-run --report``).

    ``hold``: a :class:`omnipkg_hook.store.DownloadDir` the report is written in (and pip
    holds, as for :func:`run_pip`); else a temporary file of the system's."""
    import tempfile

    fd, report_path = tempfile.mkstemp(prefix="pip-omni-report-", suffix=".json",
                                       dir=hold.path if hold is not None else None)
    os.close(fd)
    try:
        run_pip(
            python,
            ["install", "--dry-run", "--report", report_path, *args],
            what=what,
            verbose=verbose,
            hold=hold,
        )
        with open(report_path, encoding="utf-8") as f:
            return json.load(f)
    finally:
        try:
            os.unlink(report_path)
        except OSError:
            pass
