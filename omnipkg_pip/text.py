"""Wording the commands share."""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "dist")`` -> ``"1 dist"``, ``plural(2, "dist")`` -> ``"2 dists"``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
