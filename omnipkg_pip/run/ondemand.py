"""The pins of a run, made real: what is missing for an interpreter, and bubbles made on demand.

A requirement is satisfied from the main environment when main satisfies it, else from the
best stored bubble; what neither has is made as ``pip-omni install --bubble`` makes it (the
very command runs, in a subprocess, with its progress on stderr; one per interpreter, with
all of its requirements, which it makes at once; several interpreters at once). ``offline=True`` refuses
and names that command. Nothing is ever installed into the main environment.

They are made ``--no-compile``, so the program starts sooner: :func:`compile_later`, called
once the program has ended, starts their compile in the background
(:mod:`omnipkg_pip.writers.later`; ``OMNIPKG_RUN_COMPILE=now`` compiles first, as install does).
"""

from __future__ import annotations

import os
import sys

from omnipkg_hook.errors import BubbleNotFoundError, InvalidPinError, OmnipkgError

__all__ = ["missing_here", "missing_for", "make_bubbles", "make_all", "requirements", "applicable", "install_command",
           "compile_later"]


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
    """Make bubbles of ``texts`` for the interpreter ``python`` (``pip-omni install --bubble``)."""
    make_all([(python, version, texts)], offline=offline, index=index)


def make_all(jobs: list[tuple[str, str, list[str]]], *, offline: bool, index: list[str]) -> None:
    """Make the bubbles of every ``(python, version, texts)``: one ``pip-omni install --bubble
    --python PY REQ...`` per interpreter (it makes its bubbles at once, sharing what their plans
    read and fetch), the interpreters at once (one alone runs on our stderr, progress and all;
    several have their output kept and shown, each whole, as it ends). ``offline`` refuses
    and names the command."""
    jobs = [(python, version, texts) for python, version, texts in jobs if texts]
    if not jobs:
        return
    if offline:
        python, version, texts = jobs[0]
        raise BubbleNotFoundError(
            f"not stored for Python {version}: {', '.join(texts)}; --offline makes no bubble",
            f"run: {install_command(python, texts, index)}",
        )
    import subprocess

    from ..writers import later

    now = later.compile_now()
    env = {k: v for k, v in os.environ.items() if k != "OMNIPKG_PINS"}
    if not now:  # compiled after the run (compile_later), even when one of them fails
        from omnipkg_hook.store import find_store

        _LATER.extend((python, find_store(), env) for python, _version, _texts in jobs)
    for _python, version, texts in jobs:
        print(f"pip-omni run: making bubbles for Python {version}: {', '.join(texts)}", file=sys.stderr, flush=True)

    def install(python: str, texts: list[str], keep: bool):
        # The install command itself, so bubbles are made exactly as `pip-omni install --bubble`
        # makes them; its table goes to stderr too, stdout stays the script's.
        cmd = [sys.executable, "-m", "omnipkg_pip", "install", "--bubble", *["--no-compile"] * (not now),
               "--python", python, *index, *texts]
        if not keep:
            return subprocess.run(cmd, stdout=sys.stderr.fileno(), stdin=subprocess.DEVNULL, env=env).returncode
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        sys.stderr.buffer.write(proc.stdout)
        sys.stderr.flush()
        return proc.returncode

    if len(jobs) == 1:
        codes = [install(jobs[0][0], jobs[0][2], False)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
            codes = list(pool.map(lambda job: install(job[0], job[2], True), jobs))
    failed = [job for job, code in zip(jobs, codes) if code != 0]
    if failed:
        python, version, texts = failed[0]
        texts = _not_made(python, texts) or texts
        raise OmnipkgError(f"could not make the bubbles {', '.join(texts)} for Python {version}; nothing was run",
                           f"the lines above say why; to retry by hand: {install_command(python, texts, index)}")


_LATER: list = []  # (python, store root, env) of the bubbles made --no-compile by this process


def compile_later() -> None:
    """After the program: start the background compile of the bubbles :func:`make_all` made
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
