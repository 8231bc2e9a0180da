"""The command line's argument types: each checks one value and says what is wrong with it.

argparse calls them on the text given; a refusal raises ``argparse.ArgumentTypeError``, which
argparse prints as one line naming the option.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def path(text: str) -> str:
    """Check a file or folder argument: an empty one is refused, not taken as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (give a file or folder, '.' for here)")
    return text


def diameter(text: str) -> float | None:
    """``auto`` or 0 -> None (estimate per image); otherwise a positive number of pixels."""
    if text.strip().lower() == "auto":
        return None
    value = _number(text, "a number of pixels or auto")
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, or 0/auto to "
                                         f"estimate, got {text}")
    if 0 < value < 2:
        raise argparse.ArgumentTypeError(f"a cell diameter under 2 px cannot be segmented, got "
                                         f"{text} (0 or auto estimates it)")
    return value or None


def within(low: int, high: int) -> Callable[[str], int]:
    """Return an argparse type that takes a whole number from ``low`` to ``high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:,} to {high:,}, got {text}")
        return value

    return parse


def finite(text: str) -> float:
    """Take any finite number."""
    value = _number(text, "a number")
    if not abs(value) < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def at_least(low: float) -> Callable[[str], float]:
    """Return an argparse type that takes a finite number of at least ``low``."""
    def parse(text: str) -> float:
        value = finite(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low:g} or more, got {text}")
        return value

    return parse


def anisotropy(text: str) -> float:
    """Take a z step over the xy pixel size from 0.1 to 20."""
    value = _number(text, "a number")
    if not 0.1 <= value <= 20:
        raise argparse.ArgumentTypeError(f"the z step over the xy pixel size must be from 0.1 "
                                         f"to 20, got {text}")
    return value


def micrometres(text: str) -> float:
    """Take a length in micrometres, above 0 and below 10,000."""
    value = _number(text, "a number of micrometres")
    if not 0 < value < 1e4:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10,000 um, got {text}")
    return value


def _number(text: str, expected: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
