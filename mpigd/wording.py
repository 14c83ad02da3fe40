"""How counts read in what mpigd prints: "1 rank", "2 ranks"."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """``number`` and ``noun``, plural (an added "s") unless ``number`` is 1."""
    return f"{number} {noun}{'s' * (number != 1)}"
