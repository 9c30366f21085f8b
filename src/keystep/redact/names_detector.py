"""People's names from a directory the employer supplies (its employees, its customers)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from keystep.redact.spans import PERSON, Span

_OCR_CONFUSIONS: Final = (
    ("m", "rn"),
    ("rn", "m"),
    ("I", "l"),
    ("l", "I"),
    ("d", "cl"),
    ("li", "h"),
    ("vv", "w"),
)


class NameDirectoryDetector:
    """Full names from the directory, also written "Last, First" or "First L." and with
    any spacing or case."""

    name = "names"

    def __init__(self, names: Sequence[str], *, ocr: bool = False) -> None:
        variants: set[str] = set()
        spellings = set(names)
        if ocr:
            # How OCR misspells names: "Barnett" read as "Bamett", "Lily" as "Lilv".
            for name in names:
                for wrong, right in _OCR_CONFUSIONS:
                    if right in name:
                        spellings.add(name.replace(right, wrong))
        for name in spellings:
            parts = name.split()
            if not parts:
                continue
            variants.add(r"\s+".join(map(re.escape, parts)))
            if len(parts) >= 2:
                first, last = parts[0], parts[-1]
                variants.add(rf"{re.escape(last)},\s*{re.escape(first)}")
                variants.add(rf"{re.escape(first)}\s+{re.escape(last[0])}\.")
        # Longest first so "Ann Lee-Smith" wins over "Ann Lee".
        ordered = sorted(variants, key=len, reverse=True)
        self._re = (
            re.compile(r"(?<!\w)(?:" + "|".join(ordered) + r")(?!\w)", re.I) if ordered else None
        )

    def detect(self, text: str) -> list[Span]:
        if self._re is None:
            return []
        return [Span(m.start(), m.end(), PERSON) for m in self._re.finditer(text)]
