"""People's names from a directory the employer supplies (its employees, its customers)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Final

from keystep.redact.prefilter import fast_start
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
        # With ``ocr``: "First Last" where one part is exact and the other a near miss.
        self._by_first: dict[str, set[str]] = {}
        self._by_last: dict[str, set[str]] = {}
        if ocr:
            for name in names:
                parts = name.lower().split()
                if len(parts) >= 2:
                    self._by_first.setdefault(parts[0], set()).add(parts[-1])
                    self._by_last.setdefault(parts[-1], set()).add(parts[0])
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
        # fast_start: words that start no name skip the whole alternation (twice as fast).
        self._re = (
            fast_start(re.compile(r"(?<!\w)(?:" + "|".join(ordered) + r")(?!\w)", re.I))
            if ordered
            else None
        )

    def detect(self, text: str) -> list[Span]:
        if self._re is None:
            return []
        spans = [Span(m.start(), m.end(), PERSON) for m in self._re.finditer(text)]
        if self._by_first:
            spans += self._near_misses(text)
        return spans

    def _near_misses(self, text: str) -> list[Span]:
        """Two adjacent words, one a directory name's first or last name exactly and the
        other its other part with an OCR misreading or two ("Eliabeth Duran", "Michad")."""
        words = list(_WORD.finditer(text))
        spans = []
        for a, b in itertools.pairwise(words):
            first, last = a.group().lower(), b.group().lower()
            if _near(last, self._by_first.get(first, ())) or _near(
                first, self._by_last.get(last, ())
            ):
                spans.append(Span(a.start(), b.end(), PERSON, 0.7))
        return spans


_WORD: Final = re.compile(r"[^\W\d_][\w'\-]*")


def _near(word: str, candidates: Iterable[str]) -> bool:
    """Whether ``word`` is within a few edits of a candidate (a third of its length)."""
    return any(_distance(word, c, max(1, len(c) // 3)) for c in candidates)


def _distance(a: str, b: str, limit: int) -> bool:
    """Levenshtein distance of ``a`` and ``b`` is at most ``limit`` (banded, O(n * limit))."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [limit + 1] * len(b)
        for j in range(max(1, i - limit), min(len(b), i + limit) + 1):
            cost = 0 if ca == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit
