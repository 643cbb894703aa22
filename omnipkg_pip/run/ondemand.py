"""The pins of a run, made real: what is missing for an interpreter, and bubbles made on demand.

A requirement is satisfied from the main environment when main satisfies it, else from the
best stored bubble; what neither has is made as ``pip-omni install --bubble`` makes it, with
its progress on stderr: one install per interpreter, with all of its requirements, which it
makes at once. A process that runs the user's program itself (``pip-omni run script.py``, the
pytest plugin's session) runs the very command in a subprocess (:func:`make_bubbles`); the
matrix parent and a run under another interpreter run its code in threads of their own
process (:func:`start`, :class:`Making`), several interpreters at once, and a cell starts
as soon as its own bubbles are published. ``offline=True`` refuses and names that command.
Nothing is ever installed into the main environment.

They are made ``--no-compile``, so the program starts sooner: :func:`compile_later`, called
once the program has ended, starts their compile in the background
(:mod:`omnipkg_pip.writers.later`; ``OMNIPKG_RUN_COMPILE=now`` compiles first, as install does).
"""

from __future__ import annotations

import os
import sys

from omnipkg_hook.errors import BubbleNotFoundError, InvalidPinError, OmnipkgError

__all__ = ["missing_here", "missing_for", "make_bubbles", "start", "Making", "requirements", "applicable",
           "install_command", "compile_later"]


def missing_here(texts: list[str], store) -> list[str]:
    """Requirements the running interpreter can get neither from main nor from the store
    (the hook's own resolver: standard library only)."""
    from omnipkg_hook._requirements import parse_requirement
    from omnipkg_hook.resolve import main_environment, resolve

    main = main_environment(store)
    out = []
    for text in texts:
        try:
            resolve([parse_requirement(text)], store, main)
        except BubbleNotFoundError:
            out.append(text)
    return out


def missing_for(store, interpreter, texts: list[str]) -> list[str]:
    """The same for any interpreter (its main environment is read by running it)."""
    from omnipkg_hook.store import normalize

    from .. import environment
    from ..writers import bubbles

    main = None
    out = []
    for text in texts:
        req = bubbles.parse_requirement(text)
        if bubbles.find_bubble(store, req, interpreter) is not None:
            continue
        if main is None:
            main = environment.installed(interpreter, store)
        have = main.get(normalize(req.name))
        if have is not None and req.specifier.contains(have, prereleases=True) and not req.extras:
            continue
        out.append(text)
    return out


def install_command(python: str, texts: list[str], index: list[str] = ()) -> str:
    import shlex

    return shlex.join(["pip-omni", "install", "--bubble", "--python", python, *index, *texts])


_PARALLEL = 4  # interpreters whose bubbles are made at once


def make_bubbles(python: str, version: str, texts: list[str], *, offline: bool, index: list[str]) -> None:
    """Make bubbles of ``texts`` for the interpreter ``python``: ``pip-omni install --bubble``
    in a subprocess, on our stderr, progress and all (for a process that runs the user's
    program itself afterwards: install's threads, TLS and imports stay out of it)."""
    if not texts:
        return
    if offline:
        raise _offline(python, version, texts, index)
    import subprocess

    print(f"pip-omni run: making bubbles for Python {version}: {', '.join(texts)}", file=sys.stderr, flush=True)
    env = _install_env()
    # The install command itself, so bubbles are made exactly as `pip-omni install --bubble`
    # makes them; its table goes to stderr too, stdout stays the script's.
    cmd = [sys.executable, "-m", "omnipkg_pip", "install", "--bubble", *_later(python, None, env), "--python", python,
           *index, *texts]
    if subprocess.run(cmd, stdout=sys.stderr.fileno(), stdin=subprocess.DEVNULL, env=env).returncode != 0:
        texts = _not_made(python, texts) or texts
        raise _not_made_error(python, version, texts, index, "nothing was run")


def _install_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "OMNIPKG_PINS"}


def _later(python: str, store_root: str | None, env: dict) -> list[str]:
    """The install options that leave the compile for after the run (``--no-compile``; with
    ``--store-later`` the storing of the dists main has at the same version too), and
    ``python``'s compile registered for :func:`compile_later`, even if the make fails), or
    none (``OMNIPKG_RUN_COMPILE=now``)."""
    from ..writers import later

    if later.compile_now():
        return []
    if store_root is None:
        from omnipkg_hook.store import find_store

        store_root = find_store()
    _LATER.append((python, store_root, env))
    return ["--no-compile", "--store-later"]  # what main has at that version is stored then too (deferred.py)


def _offline(python: str, version: str, texts: list[str], index: list[str]) -> BubbleNotFoundError:
    return BubbleNotFoundError(f"not stored for Python {version}: {', '.join(texts)}; --offline makes no bubble",
                               f"run: {install_command(python, texts, index)}")


def _not_made_error(python: str, version: str, texts: list[str], index: list[str], what: str) -> OmnipkgError:
    return OmnipkgError(f"could not make the bubbles {', '.join(texts)} for Python {version}; {what}",
                        f"the lines above say why; to retry by hand: {install_command(python, texts, index)}")


def start(store, jobs: list[tuple[object, list[str]]], *, offline: bool, index: list[str],
          options: list[str] = ()) -> Making | None:
    """Start making the bubbles of every ``(interpreter, texts)`` in this process (None: there
    is nothing to make). ``offline`` refuses and names the command; ``options``: more
    ``pip-omni install`` options. For a process that runs no user code itself (the matrix
    parent, a run under another interpreter): see :class:`Making`."""
    jobs = [(py, list(texts)) for py, texts in jobs if texts]
    if not jobs:
        return None
    if offline:
        py, texts = jobs[0]
        raise _offline(py.executable, py.version, texts, index)
    from ..writers import download

    download.warm(index, [py.prefix for py, _texts in jobs])  # the TLS context, made while the plans start
    _import_ahead()
    making = Making(store, [(py, texts, [*_later(py.executable, store.root, _install_env()), *options])
                            for py, texts in jobs], index)
    for py, texts in jobs:
        print(f"pip-omni run: making bubbles for Python {py.version}: {', '.join(texts)}", file=sys.stderr, flush=True)
    making.thread.start()
    return making


def _import_ahead() -> None:
    """Import what storing the wheels needs (pypa/installer: ~30 ms, most of it its own imports
    of ``importlib.metadata`` and ``dataclasses``) in a thread while the plans wait on the index,
    not after them, on the way to the first cell."""
    import threading

    def load() -> None:
        try:
            import omnipkg_pip.writers.ingest  # noqa: F401
        except Exception:  # noqa: BLE001 - imported again where it is needed, and fails there as it would
            pass

    threading.Thread(target=load, name="pip-omni-imports", daemon=True).start()


class Making:
    """Bubbles being made in this process: ``pip-omni install --bubble --python PY REQ...``'s
    own code (:func:`omnipkg_pip.commands.install.run`: the same parser, plans, table and
    error lines, on stderr), one run per interpreter in a thread, up to ``_PARALLEL`` at once,
    inside one :func:`.indexplan.sharing` (pages, TLS context and downloads are read once for
    all of them). Nothing is started as a process but pip's own runs.

    :meth:`wait` returns as soon as the bubbles one cell needs are published (checked in the
    store, as the cell's pins will find them), or one of them has failed, so a cell starts
    while the others are still being made. ^C: :meth:`stop` lets the waiting cells go, and
    :meth:`abandon` ends the process while bubbles are still being made, as a killed
    install would (every store write is atomic; staging is left in tmp/ for gc)."""

    def __init__(self, store, jobs: list[tuple[object, list[str], list[str]]], index: list[str]) -> None:
        """``jobs``: ``(interpreter, requirements, more install options)``."""
        import threading

        from .. import cli

        self.store, self.jobs, self.index = store, [(py, texts) for py, texts, _options in jobs], index
        # parsed here, in the caller's thread: a usage error is argparse's, as the command's would be
        self.args = {py.executable: cli.parse_args("install", ["install", "--bubble", *options, "--python",
                                                               py.executable, *index, *texts])
                     for py, texts, options in jobs}
        self.pending = {py.executable: list(texts) for py, texts in self.jobs}  # not published yet
        self.failed: dict[tuple[str, str], str] = {}  # (executable, text) -> why it was not made
        self.said: dict[str, dict[str, str]] = {py.executable: {} for py, _ in self.jobs}  # install's error of each job
        self.stopped = False
        self.crash: BaseException | None = None  # not an error of the install: raised by finish()
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._all, name="pip-omni-make", daemon=True)
        # set when every run has ended: waited for instead of join(), which ^C can leave
        # believing a running thread stopped (CPython before 3.13)
        self.ended = threading.Event()

    def _all(self) -> None:
        import threading

        from omnipkg_hook.store import DownloadDir

        from ..writers import indexplan

        gate = threading.Semaphore(_PARALLEL)

        def one(py, texts) -> None:
            with gate:
                self._one(py, texts)

        why = None
        try:
            # the files downloaded are kept in `keep` for every interpreter's plans until all are made
            with DownloadDir(self.store, "shared-") as keep, indexplan.sharing(keep.path):
                threads = [threading.Thread(target=one, args=job, name="pip-omni-make", daemon=True)
                           for job in self.jobs]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        except BaseException as e:  # the store cannot be written: nothing can be made
            why = str(e)  # should saying it fail too
            why = self._report(e)
        finally:  # whatever happened, no cell waits for ever (what was made is not pending any more)
            try:
                for py, _texts in self.jobs:
                    self._settle(py, why)
            finally:
                self.ended.set()

    def _one(self, py, texts: list[str]) -> None:
        from ..commands import install

        why = "the bubbles were not made"
        try:
            install.run(self.args[py.executable], out=sys.stderr,
                        on_bubble=lambda text, error: self._made(py, text, error))
            why = None
        except BaseException as e:  # said now, like the command's own last lines; the cells say it again
            why = self._report(e)
        finally:
            self._settle(py, why)

    def _report(self, e: BaseException) -> str:
        from .. import cli

        if isinstance(e, OmnipkgError):
            cli.error(e.message, e.hint)
            return e.message
        if isinstance(e, OSError):
            message, hint = cli.oserror_line(e)
            cli.error(message, hint)
            return message
        with self.cond:
            self.crash = self.crash or e
        return f"{type(e).__name__}: {e}"

    def _made(self, py, text: str, error) -> None:
        with self.cond:
            if error is not None:
                self.said[py.executable][text] = " ".join(error.message.split())
            try:
                self._published(py)
            except (OmnipkgError, OSError, ValueError):  # read again when the run ends
                pass
            self.cond.notify_all()

    def _published(self, py) -> None:
        """Drop from ``pending`` what the store now has (the caller holds ``cond``)."""
        from ..writers import bubbles

        left = [t for t in self.pending[py.executable]
                if bubbles.find_bubble(self.store, bubbles.parse_requirement(t), py) is None]
        self.pending[py.executable] = left

    def _settle(self, py, why: str | None) -> None:
        """``py``'s run has ended: what it did not publish has failed, with its error."""
        from ..writers import bubbles

        with self.cond:
            try:
                self._published(py)
            except (OmnipkgError, OSError, ValueError):  # the store unreadable: every one left has failed
                pass
            said = self.said[py.executable]
            for text in self.pending[py.executable]:
                try:
                    req = bubbles.parse_requirement(text)
                    own = said.get(str(req)) or next(
                        (m for t, m in said.items() if bubbles.parse_requirement(t).name == req.name), None)
                except Exception:  # noqa: BLE001
                    own = None
                self.failed[(py.executable, text)] = (f"the bubble {text!r} was not made: {own}" if own
                                                      else why or f"the bubble {text!r} was not made")
            self.pending[py.executable] = []
            self.cond.notify_all()

    def wait(self, py, texts: list[str]) -> str | None:
        """Wait until every bubble of ``texts`` (those this makes for ``py``) is published:
        None; or one of them has failed: why; or :meth:`stop` was called: ``""``."""
        key = py.executable
        if key not in self.pending:
            return None
        with self.cond:
            while True:
                if self.stopped:
                    return ""
                why = next((self.failed[(key, t)] for t in texts if (key, t) in self.failed), None)
                if why is not None:
                    return why
                if not any(t in self.pending[key] for t in texts):
                    return None
                self.cond.wait()

    def stop(self) -> None:
        """^C: every :meth:`wait` returns ``""``; the bubbles being made go on (see :meth:`abandon`)."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def abandon(self) -> None:
        """^C: if bubbles are still being made, say so and end the process now (exit status
        130), as a killed ``pip-omni install`` ends: what it was writing stays in the store's
        tmp/, never half in the store. Returns if everything has ended."""
        if self.ended.is_set():
            return
        from .. import cli

        code = cli.interrupted()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)

    def failures(self) -> list[tuple[object, list[str]]]:
        """``[(interpreter, texts)]`` not made, in the order of the jobs."""
        return [(py, [t for t in texts if (py.executable, t) in self.failed]) for py, texts in self.jobs
                if any((py.executable, t) in self.failed for t in texts)]

    def finish(self, what: str) -> None:
        """Wait for every bubble (^C: :meth:`abandon`); the error naming those not made
        (``what``: what that means for the run), with the command that retries only them."""
        try:
            self.ended.wait()
        except KeyboardInterrupt:
            self.stop()
            self.abandon()
            raise
        if self.crash is not None:
            raise self.crash
        failed = self.failures()
        if failed:
            py, texts = failed[0]
            raise _not_made_error(py.executable, py.version, texts, self.index, what)


_LATER: list = []  # (python, store root, env) of the bubbles made --no-compile by this process


def compile_later() -> None:
    """After the program: start the background compile of the bubbles this process made
    (nothing when it made none)."""
    from ..writers import later

    while _LATER:
        python, root, env = _LATER.pop(0)
        try:
            later.start(root, python, env)
        except OSError as e:  # the next install compiles them
            print(f"pip-omni run: could not start compiling the new bubbles in the background ({e}); "
                  "the next `pip-omni install` compiles them", file=sys.stderr)


def _not_made(python: str, texts: list[str]) -> list[str]:
    """Which of ``texts`` still have no bubble for ``python`` (the others were made: an install
    that fails for one requirement makes the rest)."""
    from omnipkg_hook.store import Store

    from ..pythons import interpreters
    from ..writers import bubbles

    try:
        store = Store()
        interpreter = interpreters.resolve_python(store, python)
        return [t for t in texts if bubbles.find_bubble(store, bubbles.parse_requirement(t), interpreter) is None]
    except (OmnipkgError, OSError, ValueError):
        return []


def requirements(block: list[str], extra: list[str], markers: dict | None) -> list[str]:
    """What a run pins, one requirement per distribution: the script block's and ``--with``'s
    requirements whose environment markers hold for ``markers`` (an interpreter's marker
    environment; None: the running interpreter's), markers dropped. The same name twice in
    one of them is one requirement, as uv takes it (``rich>=13`` and ``rich<14``:
    ``rich>=13,<14``, extras united); ``--with`` replaces the block's requirement of a name.

    The common case (no marker, every name once) is returned as given, unparsed: the warm
    path of ``pip-omni run`` imports no requirement parser."""
    texts = [*block, *extra]
    if not any(";" in t for t in texts) and _distinct(texts):
        return texts
    out: dict[str, str] = {}
    for group in (block, extra):
        for key, text in _combine(applicable(group, markers)).items():
            out.pop(key, None)
            out[key] = text
    return list(out.values())


def _distinct(texts: list[str]) -> bool:
    """Whether no two of ``texts`` name the same distribution (a cheap scan of the names)."""
    seen = set()
    for text in texts:
        text = text.lstrip()
        end = 0
        while end < len(text) and (text[end].isalnum() or text[end] in "._-"):
            end += 1
        key = text[:end].lower().replace("_", "-").replace(".", "-")
        while "--" in key:
            key = key.replace("--", "-")
        if not key or key in seen:
            return False
        seen.add(key)
    return True


def _combine(texts: list[str]) -> dict[str, str]:
    """``{key: requirement}`` with one requirement per name (specifiers intersected)."""
    from omnipkg_hook._requirements import parse_requirement

    by_key: dict[str, list] = {}
    for text in texts:
        req = parse_requirement(text)
        by_key.setdefault(req.key, []).append((text, req))
    out = {}
    for key, reqs in by_key.items():
        if len(reqs) == 1:
            out[key] = reqs[0][0]
            continue
        urls = {req.url for _, req in reqs if req.url}
        if len(urls) > 1:
            raise InvalidPinError(f"{reqs[0][1].name!r} is required from two URLs: "
                                  f"{' and '.join(repr(t) for t, _ in reqs)}", "keep one of them")
        extras = sorted(set().union(*(req.extras for _, req in reqs)))
        specs = ",".join(str(req.specifier) for _, req in reqs if str(req.specifier))
        text = reqs[0][1].name + (f"[{','.join(extras)}]" if extras else "")
        out[key] = text + (f" @ {urls.pop()}" if urls else specs)
    return out


def applicable(texts: list[str], markers: dict | None) -> list[str]:
    """``texts`` without the requirements whose environment marker is false for ``markers``
    (the interpreter's marker environment; None: the running interpreter's), markers dropped.
    Markers are evaluated with the hook's standard-library evaluator (no ``packaging``)."""
    from omnipkg_hook._requirements import parse_requirement

    out = []
    env = markers
    for text in texts:
        req = parse_requirement(text)
        if req.marker is None:
            out.append(text)
            continue
        from omnipkg_hook import _markers

        if env is None:
            from omnipkg_hook._tags import marker_environment

            env = marker_environment()
        try:
            holds = _markers.Marker(req.marker).evaluate({**env, "extra": ""})
        except (_markers.InvalidMarker, _markers.UndefinedComparison, _markers.UndefinedEnvironmentName) as e:
            raise InvalidPinError(f"requirement {text!r}: the marker is not valid: {e}",
                                  'e.g. rich>=13; python_version >= "3.10"') from None
        if holds:
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            out.append(f"{req.name}{extras} @ {req.url}" if req.url else f"{req.name}{extras}{req.specifier}")
    return out
