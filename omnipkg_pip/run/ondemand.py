"""The pins of a run, made real: what is missing for an interpreter, and bubbles made on demand.

A requirement is satisfied from the main environment when main satisfies it, else from the
best stored bubble; what neither has is made as ``pip-omni install --bubble`` makes it (the
very command runs, in a subprocess, with its progress on stderr). ``offline=True`` refuses
and names that command. Nothing is ever installed into the main environment.
"""

from __future__ import annotations

import os
import sys

from omnipkg_hook.errors import BubbleNotFoundError, OmnipkgError

__all__ = ["missing_here", "missing_for", "make_bubbles", "applicable", "merge", "install_command"]


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


def make_bubbles(python: str, version: str, texts: list[str], *, offline: bool, index: list[str]) -> None:
    """Make bubbles of ``texts`` for the interpreter ``python`` (``pip-omni install --bubble``)."""
    if not texts:
        return
    command = install_command(python, texts, index)
    if offline:
        raise BubbleNotFoundError(
            f"not stored for Python {version}: {', '.join(texts)}; --offline makes no bubble",
            f"run: {command}",
        )
    import subprocess

    print(f"pip-omni run: making bubbles for Python {version}: {', '.join(texts)}", file=sys.stderr, flush=True)
    # The install command itself, so a bubble is made exactly as `pip-omni install --bubble`
    # makes it; its table goes to stderr too, stdout stays the script's.
    proc = subprocess.run([sys.executable, "-m", "omnipkg_pip", "install", "--bubble", "--python", python,
                           *index, *texts], stdout=sys.stderr.fileno(), stdin=subprocess.DEVNULL,
                          env={k: v for k, v in os.environ.items() if k != "OMNIPKG_PINS"})
    if proc.returncode != 0:
        raise OmnipkgError(f"could not make the bubbles {', '.join(texts)} for Python {version}; nothing was run",
                           f"the lines above say why; to retry by hand: {command}")


def applicable(texts: list[str], markers: dict | None) -> list[str]:
    """``texts`` without the requirements whose environment marker is false for ``markers``
    (the interpreter's marker environment; None: the running interpreter's), markers dropped."""
    from omnipkg_hook._requirements import parse_requirement

    out = []
    for text in texts:
        req = parse_requirement(text)
        if req.marker is None:
            out.append(text)
            continue
        from packaging.markers import Marker, default_environment

        env = dict(markers) if markers is not None else default_environment()
        if Marker(req.marker).evaluate({**env, "extra": ""}):
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            out.append(f"{req.name}{extras}{req.specifier}")
    return out


def merge(texts: list[str]) -> list[str]:
    """One requirement per distribution, the last one given winning (``--with`` over the block)."""
    from omnipkg_hook._requirements import parse_requirement

    by_key: dict[str, str] = {}
    for text in texts:
        key = parse_requirement(text).key
        by_key.pop(key, None)
        by_key[key] = text
    return list(by_key.values())
