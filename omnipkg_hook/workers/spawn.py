"""Starting workers and zygotes, seen from their owner (a :class:`WorkerPool` or the daemon).

A worker is started as ``[python, (-E), "-c", BOOT, <omnipkg_hook>/workers/_boot.py,
"process", "--fd", N, "--pins", P]`` with one end of a socketpair passed as fd ``N``.
BOOT runs ``_boot.py``, which loads the ``omnipkg_hook`` package from its directory with
``importlib.util.spec_from_file_location(..., submodule_search_locations=[dir])`` and
registers it in ``sys.modules``: the interpreter needs no pip-omni installed, and no
site-packages of another interpreter ever lands on its ``sys.path``. A BOOT failure
(an interpreter older than 3.9, a broken package) is written to the socket as a BOOTFAIL
frame, so the owner reports the real reason, not just "it exited".

Why the pins travel as ``--pins`` and not as ``OMNIPKG_PINS`` in the environment at
exec time: if the interpreter has pip-omni installed, its ``.pth`` would apply
``OMNIPKG_PINS`` during ``site`` -- from *that* installation, whatever its version --
and ``site`` prints and swallows any error there. So the child starts with
``OMNIPKG_PINS`` removed, and the worker sets it itself before calling the hook's
``omnipkg_hook.startup.run()``: the pins are applied by the hook, once, from the
package BOOT loaded, any error reaches the owner, and the worker's own children
inherit ``OMNIPKG_PINS``. ``OMNIPKG_STORE`` is set to the owner's store.

Environment: a :class:`WorkerPool` keeps the caller's environment and working
directory (a worker behaves like ``python`` started from the caller). The daemon
passes ``-E`` and runs in ``/``: it is shared by every client of the user, so its
workers must not depend on the ``PYTHONPATH`` of whichever client happened to start it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from ..errors import InterpreterError, RemoteError, WorkerCrashedError, WorkerError
from . import protocol as P

__all__ = [
    "BOOT",
    "BOOT_FILE",
    "PACKAGE_DIR",
    "Process",
    "command",
    "worker_env",
    "spawn",
    "fork_from",
    "resolve_python",
    "canonical_pins",
    "label",
    "remote_error",
]

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BOOT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")
# Short, so that `ps` stays readable: the loader itself is _boot.py, named in argv.
BOOT = "import sys;p=sys.argv[1];exec(compile(open(p,'rb').read(),p,'exec'),{'__name__':'__omnipkg_boot__'})"


def command(python: str, module: str, args: list[str], *, isolate_env: bool = False) -> list[str]:
    """The argv that runs ``omnipkg_hook.workers.<module>.main(args)`` under ``python``."""
    return [python, *(["-E"] if isolate_env else []), "-c", BOOT, BOOT_FILE, module, *args]


def worker_env(base: dict, store: str) -> dict:
    env = dict(base)
    env.pop("OMNIPKG_PINS", None)
    env["OMNIPKG_STORE"] = store
    return env


def resolve_python(python: str | None) -> str:
    """The executable for ``python=``: None (this interpreter), a path, or a version.

    A version (``"3.9"``, ``"3.12.1"``) names an interpreter adopted with
    ``pip-omni python adopt``: the store's ``interpreters.json`` is read here with the
    standard library (the format is documented in ``omnipkg_pip/pythons/interpreters.py``), the
    highest matching version whose executable still exists wins.
    """
    exe = sys.executable
    if not exe:
        raise InterpreterError("this interpreter does not know its executable (sys.executable is empty)")
    if python is None or python == exe:
        return exe
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if python in (version, platform_version()) or os.path.abspath(os.path.expanduser(python)) == os.path.abspath(exe):
        return exe
    if os.sep in python or os.path.exists(python):
        path = os.path.abspath(os.path.expanduser(python))
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise InterpreterError(f"python={python!r} is not an executable interpreter",
                                   "give the path of a python executable, or an adopted version like '3.9'")
        return path
    from ..store import find_store

    registry = os.path.join(find_store(), "interpreters.json")
    try:
        with open(registry, encoding="utf-8") as f:
            records = json.load(f).get("interpreters", [])
    except FileNotFoundError:
        records = []
    except (OSError, ValueError, AttributeError) as e:
        raise InterpreterError(f"cannot read {registry!r}: {e}",
                               "delete the file and adopt your interpreters again") from None
    hits = [r for r in records if isinstance(r, dict)
            and (r.get("version") == python or str(r.get("version", "")).startswith(python + "."))]
    hits.sort(key=lambda r: [int(x) for x in str(r["version"]).split(".") if x.isdigit()], reverse=True)
    for r in hits:
        if os.access(str(r.get("path", "")), os.X_OK):
            return r["path"]
    if hits:
        raise InterpreterError(f"the adopted Python {python} at {hits[0].get('path')!r} no longer exists",
                               f"run `pip-omni python forget {python}` and adopt it again")
    raise InterpreterError(f"python={python!r}: Python {python} is not adopted (this process runs Python {version})",
                           f"run `pip-omni python adopt {python}` first")


def platform_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def canonical_pins(pins) -> tuple[str, ...]:
    """``("rich==13.5.3",)`` from a str, several strs, or an iterable of them; sorted, unique."""
    out: list[str] = []
    for item in pins:
        for pin in [item] if isinstance(item, str) else item:
            if not isinstance(pin, str):
                raise TypeError(f"a pin is a requirement string like 'rich==13.5.3', not {pin!r}")
            pin = pin.strip()
            if pin:
                out.append(pin)
    return tuple(sorted(set(out)))


def label(pins: tuple[str, ...], python: str | None = None) -> str:
    text = ", ".join(pins) if pins else "no pins"
    return f"{text} on {python}" if python else text


def remote_error(what: str, body) -> RemoteError:
    """A :class:`RemoteError` from an ERROR frame's body."""
    name, message, text, out, err = P.loads(body)
    return RemoteError(
        f"{what}: {name}: {message}",
        remote_type=name, remote_message=message, remote_traceback=text, stdout=out, stderr=err,
    )


class Process:
    """A worker or zygote as its owner sees it: control connection, pid, kill, exit status."""

    def __init__(self, conn: P.Connection, pid: int, popen=None, via: str = "spawn", what: str = "") -> None:
        self.conn = conn
        self.pid = pid
        self.popen = popen
        self.via = via
        self.what = what
        self.info: dict = {}
        self.pidfd = None
        if popen is None and hasattr(os, "pidfd_open"):
            try:  # a zygote's child is not ours to wait for; a pidfd makes kill() race-free
                self.pidfd = os.pidfd_open(pid)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} via={self.via} {self.what}>"

    def wait_ready(self, timeout: float | None) -> dict:
        """The READY info; a start-up failure raises :class:`RemoteError` or
        :class:`WorkerCrashedError` saying why."""
        sock = self.conn.sock
        sock.settimeout(timeout)
        try:
            kind, body = self.conn.recv()
        except socket.timeout:
            self.kill()
            raise WorkerError(
                f"{self.what} (pid {self.pid}) did not start within {timeout:g} s; it was killed",
                "a pinned package may import slowly or hang at import",
            ) from None
        except (EOFError, OSError):
            raise WorkerCrashedError(
                f"{self.what} (pid {self.pid}) exited before it was ready{self.exit_status()}",
                "its stderr says why (the daemon's log for daemon workers)",
            ) from None
        finally:
            try:
                sock.settimeout(None)
            except OSError:
                pass
        if kind == P.READY:
            self.info = P.loads(body)
            return self.info
        self.kill()
        if kind == P.ERROR:
            raise remote_error(f"{self.what} could not start", body)
        if kind == P.BOOTFAIL:
            text = bytes(body).decode("utf-8", "replace")
            last = text.strip().splitlines()[-1] if text.strip() else "no details"
            raise RemoteError(
                f"{self.what} could not start: {last}",
                remote_type="BootError", remote_message=last, remote_traceback=text,
            )
        raise WorkerCrashedError(f"{self.what} sent {kind!r} instead of READY")

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self.pidfd is not None:  # readable once the process has exited
            import select

            return not select.select([self.pidfd], [], [], 0)[0]
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def wait_dead(self, timeout: float) -> bool:
        """Wait until the process has exited (its sockets are closed then); False on timeout."""
        if self.popen is not None:
            import subprocess

            try:
                self.popen.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        if self.pidfd is not None:
            import select

            return bool(select.select([self.pidfd], [], [], timeout)[0])
        import time

        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def kill(self) -> None:
        try:
            if self.popen is not None:
                self.popen.kill()
            elif self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass

    def exit_status(self, wait: float = 0.5) -> str:
        """`` (killed by signal 9)`` / `` (exit status 1)`` when known, else ``""``."""
        if self.popen is None:
            return ""
        import subprocess

        try:
            code = self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            return ""
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f" (killed by {name})"
        return f" (exit status {code})"

    def close(self) -> None:
        self.conn.close()
        if self.pidfd is not None:
            try:
                os.close(self.pidfd)
            except OSError:
                pass
            self.pidfd = None


def _stdout_target():
    """Workers' fd 1 goes to the owner's stderr: stray C-level prints never reach the
    owner's stdout, which may be data (``--json``)."""
    try:
        os.fstat(2)
        return 2
    except OSError:
        import subprocess

        return subprocess.DEVNULL


def spawn(
    python: str,
    pins: tuple[str, ...],
    *,
    store: str,
    zygote: bool = False,
    env: dict | None = None,
    cwd: str | None = None,
    isolate_env: bool = False,
    max_frame: int = P.MAX_FRAME,
    stderr=None,
) -> Process:
    """Start a worker (or a zygote) process; call :meth:`Process.wait_ready` next."""
    import subprocess  # not at import: a kept cell zygote's client starts no process

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    args = ["--fd", str(child.fileno()), "--pins", ",".join(pins), "--max-frame", str(max_frame)]
    if zygote:
        args.append("--zygote")
    what = f"worker for {label(pins)}"  # a zygote too: users ask for workers
    try:
        popen = subprocess.Popen(
            command(python, "process", args, isolate_env=isolate_env),
            pass_fds=[child.fileno()],
            env=worker_env(os.environ if env is None else env, store),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=_stdout_target() if stderr is None else stderr,
            stderr=stderr,
            close_fds=True,
        )
    except OSError as e:
        parent.close()
        raise InterpreterError(f"cannot run {python!r} for the {what}: {e.strerror or e}") from None
    finally:
        child.close()
    return Process(P.Connection(parent, max_frame), popen.pid, popen, "zygote-process" if zygote else "spawn", what)


def fork_from(zygote: Process, timeout: float = 30.0) -> Process:
    """Ask a READY zygote for a new worker (its child); call :meth:`Process.wait_ready` next."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    conn = zygote.conn
    try:
        conn.sock.settimeout(timeout)
        conn.send_fds(P.FORK, b"", [child.fileno()])
        kind, body = conn.recv()
    except (EOFError, OSError) as e:
        parent.close()
        raise WorkerCrashedError(f"the zygote of the {zygote.what} (pid {zygote.pid}) did not fork: {e}") from None
    finally:
        child.close()
        try:
            conn.sock.settimeout(None)
        except OSError:
            pass
    if kind != P.RESULT:
        parent.close()
        raise remote_error(f"the zygote of the {zygote.what} could not fork", body)
    (pid,) = P.loads(body)
    return Process(P.Connection(parent, conn.max_frame), pid, None, "zygote", zygote.what)
