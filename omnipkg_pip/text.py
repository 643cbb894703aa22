"""Wording the commands share."""

from __future__ import annotations

__all__ = ["megabytes", "plural"]


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "dist")`` -> ``"1 dist"``, ``plural(2, "dist")`` -> ``"2 dists"``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def megabytes(n: int) -> str:
    """``megabytes(2_500_000)`` -> ``"2.5 MB"`` (decimal, as ``du --si`` and pip say it)."""
    return f"{n / 1e6:.1f} MB"
