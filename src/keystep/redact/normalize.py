"""Invisible-character stripping with a map back to the original text, and OCR confusables."""

from __future__ import annotations

import re
from typing import Final

# Zero-width, bidi-control and soft-hyphen characters: invisible when rendered, so someone
# (or a paste) can put them between the digits of a card number to slip past a regex.
INVISIBLE: Final = frozenset(
    "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
)
_INVISIBLE_RE: Final = re.compile("[" + "".join(sorted(INVISIBLE)) + "]")


class Stripped:
    """``text`` without invisible characters, mapping its offsets back to the original."""

    __slots__ = ("_starts", "original", "text")

    def __init__(self, original: str) -> None:
        self.original = original
        if _INVISIBLE_RE.search(original) is None:
            self.text = original
            self._starts: list[int] | None = None
            return
        kept = [i for i, ch in enumerate(original) if ch not in INVISIBLE]
        self.text = "".join(original[i] for i in kept)
        self._starts = kept

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The original range covering stripped ``[start, end)`` (and invisibles inside it)."""
        if self._starts is None:
            return start, end
        if end <= start:
            return self._starts[start] if start < len(self._starts) else len(self.original), end
        return self._starts[start], self._starts[end - 1] + 1


def leak_key(text: str) -> str:
    """What stays of a value after normalising spaces, separators and invisible characters."""
    return "".join(filter(str.isalnum, text.casefold()))


# What Tesseract commonly reads instead of a digit inside a number.
OCR_DIGITS: Final = str.maketrans(
    {
        "O": "0",
        "o": "0",
        "D": "0",
        "Q": "0",
        "I": "1",
        "l": "1",
        "|": "1",
        "i": "1",
        "!": "1",
        "Z": "2",
        "z": "2",
        "S": "5",
        "s": "5",
        "B": "8",
        "G": "6",
        "b": "6",
        "g": "9",
        "q": "9",
        "T": "7",
        "@": "0",
    }
)
