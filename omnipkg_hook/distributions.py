"""A pinned distribution as ``importlib.metadata`` sees it: its ``.dist-info`` in the store.

:meth:`omnipkg_hook.finder.OmnipkgFinder.find_distributions` hands these out, so
``importlib.metadata.version("rich")`` agrees with ``import rich``. Imported the first time
something asks about a pinned distribution (``importlib.metadata`` is loaded by then);
a pinned start-up does not import it.
"""

from __future__ import annotations

import pathlib
from importlib.metadata import PathDistribution

__all__ = ["StoreDistribution"]


class StoreDistribution(PathDistribution):
    """A pinned distribution's ``.dist-info`` in the store. Store files never change in place
    (a new version is a new directory), so file reads and the parsed metadata are cached."""

    def __init__(self, path: str) -> None:
        super().__init__(pathlib.Path(path))
        self._texts: dict = {}
        self._metadata = None

    @property
    def metadata(self):
        # Parsed once: the email parser is most of what version() costs.
        if self._metadata is None:
            self._metadata = super().metadata
        return self._metadata

    def read_text(self, filename):
        try:
            return self._texts[filename]
        except KeyError:
            text = self._texts[filename] = super().read_text(filename)
            return text

    def __repr__(self) -> str:
        return f"<StoreDistribution {str(self._path)!r}>"
