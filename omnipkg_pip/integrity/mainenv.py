"""The main environment, as ``pip-omni doctor`` checks it: nothing of pip-omni's in it.

Switching never writes to site-packages, so there should be nothing to find. What is
looked for, in the running interpreter's purelib and platlib (read, never changed):

- metadata of a store dist (``INSTALLER`` says ``pip-omni``);
- two metadata directories for one distribution (``MarkupSafe-2.1.3.dist-info`` beside
  ``markupsafe-2.0.1.dist-info``: what a crashed rename-based switcher leaves);
- an entry no installed distribution's RECORD lists that looks like ours (``omnipkg``
  in its name) or like a renamed copy of an installed top-level name (``rich.bak``,
  ``rich-old``, ``rich.omnipkg_bak``);
- a ``.pth`` file that puts the store on ``sys.path``.

Other entries no distribution lists are notes, not problems (``_virtualenv.pth``,
a user's ``sitecustomize.py``...).
"""

from __future__ import annotations

import os
import re

from omnipkg_hook.store import Store

__all__ = ["check_main"]

_OURS = re.compile(r"omnipkg|pip[-_]omni", re.I)


def check_main(store: Store) -> tuple[list[tuple[str, str]], list[str]]:
    """``([(path, problem)], [note])`` about the running interpreter's site-packages (never changed)."""
    import sysconfig

    try:
        import importlib.metadata as md
    except ImportError:  # pragma: no cover
        return [], []
    problems, notes = [], []
    paths = sysconfig.get_paths()
    sites = []
    for key in ("purelib", "platlib"):
        p = paths.get(key)
        if p and os.path.isdir(p) and p not in sites:
            sites.append(p)
    for site in sites:
        owned, tops, names = set(), set(), {}
        for dist in md.distributions(path=[site]):
            meta = os.path.basename(str(getattr(dist, "_path", "")))
            owned.add(meta)
            name = (dist.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-")
            names.setdefault(name, []).append(meta)
            for top in _record_tops(dist):
                owned.add(top)
                tops.add(top)
            if (dist.read_text("INSTALLER") or "").strip() == "pip-omni":
                problems.append((os.path.join(site, meta),
                                 "metadata of a store dist (INSTALLER says pip-omni) in the main environment"))
        for name, metas in sorted(names.items()):
            if len(metas) > 1:
                problems.append((site, f"{len(metas)} metadata directories for {name}: {', '.join(sorted(metas))}"))
        for entry in _ls(site):
            full = os.path.join(site, entry)
            if entry.endswith(".pth"):
                try:
                    with open(full, encoding="utf-8", errors="replace") as f:
                        text = f.read()
                except OSError:
                    text = ""
                if store.root in text:
                    problems.append((full, f"puts the store ({store.root}) on sys.path"))
            if entry in owned or entry == "__pycache__":
                continue
            renamed = next((t for t in tops if entry != t and entry.startswith(t) and entry[len(t)] in "._-~"
                            and not entry.endswith((".dist-info", ".egg-info", ".pth", ".py"))), None)
            if _OURS.search(entry) or renamed:
                what = f"a renamed copy of {renamed!r}?" if renamed else "looks like pip-omni's"
                problems.append((full, f"no installed distribution owns it ({what})"))
            else:
                notes.append(f"{full}: no installed distribution lists it")
    return problems, notes


def _record_tops(dist) -> set[str]:
    """First path components of the files a distribution's RECORD lists (``dist.files``, faster)."""
    text = dist.read_text("RECORD")
    if text is None:
        return {f.parts[0] for f in dist.files or () if f.parts and f.parts[0] != ".."}
    tops = set()
    for line in text.splitlines():
        if line.startswith('"'):
            import csv

            line = next(csv.reader([line]))[0]
        top = line.split(",", 1)[0].split("/", 1)[0]
        if top and top != "..":
            tops.add(top)
    return tops


def _ls(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
