"""Prefilters that cannot miss: what every match of some regular expressions needs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

# The parser behind re.compile (hypothesis reads patterns through it too); sre_parse, its
# old name, warns on import since Python 3.11.
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any, Final

# A contiguous stretch of a pattern made of literals and small classes of them, maybe
# repeated ("api", "_?", "[rs]"): each piece's source and how rare it makes a match.
Piece = tuple[str, float]
Factor = tuple[Piece, ...]
Needed = list[Factor]  # every match holds one of these factors

# Flags that change what a literal matches; the others (DOTALL, MULTILINE, VERBOSE) only
# change constructs that never end up in a factor.
_FLAG_LETTERS: Final = ((re.IGNORECASE, "i"), (re.ASCII, "a"))
_MAX_CLASS: Final = 8  # a wider character class says too little to be worth a factor
_MAX_NEEDS: Final = 3  # needs checked per pattern: the rarest ones
_REPEATS: Final = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
_LAZY: Final = {sre.MAX_REPEAT: "", sre.MIN_REPEAT: "?"}  # possessive ones end a factor


@dataclass(frozen=True)
class Gate:
    """What a string needs for one of some patterns to find a match in it.

    For each pattern: a few texts every match of it holds (each a choice of literals) and
    the shortest length a match can have. ``first`` finds the rarest text of one of the
    patterns (one quick search rules out most strings); ``then`` matches at the start of a
    string holding all the texts and the length of at least one pattern.
    """

    first: re.Pattern[str]
    then: re.Pattern[str]
    min_length: int

    def admits(self, text: str) -> bool:
        return (
            len(text) >= self.min_length
            and self.first.search(text) is not None
            and self.then.match(text) is not None
        )


def gate(patterns: Iterable[re.Pattern[str]]) -> Gate | None:
    """The gate of ``patterns``, or None when one of them needs no text we can name.

    ``not gate(ps).admits(s)`` proves that no pattern of ``ps`` finds anything in ``s``, so
    a caller can skip the costly patterns, never a match.
    """
    return _gate(tuple(patterns))


# Reading patterns costs tens of milliseconds; every Redactor of a process shares them.
@lru_cache(maxsize=256)
def _gate(patterns: tuple[re.Pattern[str], ...]) -> Gate | None:
    rarest: set[str] = set()
    branches: set[str] = set()
    min_length: int | None = None
    for pattern in patterns:
        parsed = list(_parser.parse(pattern.pattern, pattern.flags))
        needs = _sequence(parsed)
        if not needs:
            return None
        flags = "".join(letter for flag, letter in _FLAG_LETTERS if pattern.flags & flag)
        strongest = sorted(needs, key=_strength, reverse=True)[:_MAX_NEEDS]
        rarest.add(f"(?{flags}:{_source(strongest[0])})")
        width = _min_width(parsed)
        min_length = width if min_length is None else min(min_length, width)
        lookaheads = [f"(?=.{{{width}}})"] if width else []
        lookaheads += sorted({f"(?=.*?(?{flags}:{_source(need)}))" for need in strongest})
        branches.add("".join(lookaheads))
    if min_length is None:
        return None
    return Gate(
        re.compile("|".join(sorted(rarest))),
        re.compile("(?s:" + "|".join(sorted(branches)) + ")"),
        min_length,
    )


@lru_cache(maxsize=64)
def fast_start(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """``pattern`` told which characters its matches can start with, when that can be
    named: it then skips most positions with one look instead of trying every branch
    there (re does this by itself only for patterns that start with a literal or class).
    The matches are the same, groups included; otherwise ``pattern`` itself."""
    if pattern.flags & re.VERBOSE:
        return pattern
    parsed = list(_parser.parse(pattern.pattern, pattern.flags))
    if not parsed or _one_character(*parsed[0]):
        return pattern  # rejecting a position is cheap already
    starts, may_be_empty = _first_chars(parsed)
    if not starts or may_be_empty:
        return pattern
    try:
        return re.compile(f"(?={'|'.join(sorted(starts))})(?:{pattern.pattern})", pattern.flags)
    except re.error:  # global flags written into the pattern must stay first
        return pattern


def _one_character(op: Any, arg: Any) -> bool:
    """Whether a parsed item is one character (or a repeat of one) to check first."""
    if op in (sre.LITERAL, sre.IN):
        return True
    return op in _REPEATS and arg[0] >= 1 and len(arg[2]) == 1 and _one_character(*arg[2][0])


def _first_chars(items: list[tuple[Any, Any]]) -> tuple[set[str] | None, bool]:
    """Patterns of one character, one of which the first character of a non-empty match
    of ``items`` matches (None if unknown), and whether a match can be empty."""
    starts: set[str] = set()
    for op, arg in items:
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue  # matches no character
        first: set[str] | None
        if op is sre.LITERAL:
            first, empty = {re.escape(chr(arg))}, False
        elif op is sre.IN:
            charset = _charset(arg)
            first, empty = ({charset} if charset else None), False
        elif op is sre.SUBPATTERN and not arg[1] and not arg[2]:
            first, empty = _first_chars(list(arg[3]))
        elif op is sre.BRANCH:
            options = [_first_chars(list(branch)) for branch in arg[1]]
            known = [f for f, _ in options if f is not None]
            first = set().union(*known) if len(known) == len(options) else None
            empty = any(e for _, e in options)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            first, empty = _first_chars(list(arg[2]))
            empty = empty or arg[0] == 0
        else:
            return None, False
        if first is None:
            return None, False
        starts |= first
        if not empty:
            return starts, False
    return starts, True


_CATEGORIES: Final = {
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
}


def _charset(items: list[tuple[Any, Any]]) -> str | None:
    """The source of a parsed character class, or None for what it cannot write back."""
    out = []
    for i, (op, arg) in enumerate(items):
        if op is sre.NEGATE and i == 0:
            out.append("^")
        elif op is sre.LITERAL:
            out.append(re.escape(chr(arg)))
        elif op is sre.RANGE:
            out.append(f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}")
        elif op is sre.CATEGORY and arg in _CATEGORIES:
            out.append(_CATEGORIES[arg])
        else:
            return None
    return "[" + "".join(out) + "]" if out and out != ["^"] else None


def _source(need: Needed) -> str:
    """The alternation of ``need``'s factors, without those that hold another one (a
    search for "pass|password" finds something exactly where one for "pass" does)."""
    kept = {f for f in need if not any(_inside(other, f) for other in need)}
    return "|".join(sorted("".join(source for source, _ in factor) for factor in kept))


def _inside(inner: Factor, outer: Factor) -> bool:
    n = len(inner)
    return inner != outer and any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


def _sequence(items: list[tuple[Any, Any]]) -> list[Needed]:
    """What every match of ``items`` (a parsed sequence) needs: each entry a choice of
    factors one of which the match holds; empty when nothing can be named."""
    needs: list[Needed] = []
    run: list[Piece] = []

    def close_run() -> None:
        if run:
            needs.append([tuple(run)])
            run.clear()

    for op, arg in _inline_groups(items):
        piece = _piece(op, arg)
        if piece is not None:
            run.append(piece)
            continue
        close_run()
        if op is sre.BRANCH:
            # Each alternative's strongest need; only when every alternative has one.
            options = [_sequence(list(branch)) for branch in arg[1]]
            if all(options):
                needs.append([f for o in options for f in max(o, key=_strength)])
        elif op in _REPEATS and arg[0] >= 1:
            needs.extend(_sequence(list(arg[2])))
        elif op is sre.ATOMIC_GROUP:
            needs.extend(_sequence(list(arg)))
        # Anything else (groups with flags of their own, any character, wide classes,
        # anchors, lookarounds, back references, conditionals) needs no text we can name.
    close_run()
    return needs


def _inline_groups(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """``items`` with the contents of plain groups spliced in: a group without flags of
    its own matches what its contents match, so literals around it run on."""
    out: list[tuple[Any, Any]] = []
    for op, arg in items:
        if op is sre.SUBPATTERN and not arg[1] and not arg[2]:
            out.extend(_inline_groups(list(arg[3])))
        else:
            out.append((op, arg))
    return out


def _piece(op: Any, arg: Any) -> Piece | None:
    """The source and rarity of a literal, a small class of literals, or one of those
    repeated; None for anything else."""
    if op is sre.LITERAL:
        return re.escape(chr(arg)), 1.0
    if (
        op is sre.IN
        and 0 < len(arg) <= _MAX_CLASS
        and all(item_op is sre.LITERAL for item_op, _ in arg)
    ):
        return "[" + "".join(re.escape(chr(code)) for _, code in arg) + "]", 0.5
    if op in _LAZY and len(arg[2]) == 1:
        low, high, body = arg
        piece = _piece(*body[0])
        if piece is not None and "{" not in piece[0]:
            most = "" if high == sre.MAXREPEAT else str(high)
            return f"{piece[0]}{{{low},{most}}}{_LAZY[op]}", piece[1] * low
    return None


def _strength(need: Needed) -> float:
    """How rarely a need is met, roughly: the literal characters a match of its weakest
    factor holds at least (a class of them counts half)."""
    return min(sum(rarity for _, rarity in factor) for factor in need)


def _min_width(items: list[tuple[Any, Any]]) -> int:
    """A lower bound of the length of any match of ``items`` (a parsed sequence)."""
    width = 0
    for op, arg in items:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.IN, sre.ANY):
            width += 1
        elif op is sre.SUBPATTERN:
            width += _min_width(list(arg[3]))
        elif op is sre.ATOMIC_GROUP:
            width += _min_width(list(arg))
        elif op is sre.BRANCH:
            width += min(_min_width(list(branch)) for branch in arg[1])
        elif op in _REPEATS:
            width += arg[0] * _min_width(list(arg[2]))
        # Anchors, lookarounds, back references and conditionals may match nothing.
    return width
