"""Presidio pattern recognizers run for exactly what their ``analyze`` finds, faster."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, Final

import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
)

Finder = Callable[[str], list[RecognizerResult]]

_WS: Final = " \t\n\r\f\v"


# Recognizers whose matches never hold whitespace, so only the whitespace-separated tokens
# that can hold a match need scanning, each alone: their edges (\b, (?<![\w:]),
# (?![\w:]|\.\d)) read whitespace as they read the end of the string, so a token scanned
# alone gives the matches the whole text gives. Each pattern finds whole tokens (the
# lookbehind keeps a long token from being tried at every position). The argument was
# checked on these exact patterns and flags (the fingerprint); other patterns (another
# Presidio) are scanned over the whole text until it is checked again
# (tests/redact/test_presidio_patterns.py).
_TOKEN_SCOPED: Final[dict[type[PatternRecognizer], tuple[re.Pattern[str], str]]] = {
    # Word characters, !#$%&'*+-/=?^_`{|}~ and dots around an "@".
    EmailRecognizer: (re.compile(rf"(?<![^{_WS}])[^{_WS}@]*@[^{_WS}]*"), "457257c8c64fb2d5"),
    # Hex digits, dots, colons, "%" zone names, "/" prefix lengths: IPv4 has three dots,
    # every IPv6 form ("::" included) at least two colons.
    IpRecognizer: (
        re.compile(rf"(?<![^{_WS}])(?:(?:[^{_WS}.]*\.){{3}}|(?:[^{_WS}:]*:){{2}})[^{_WS}]*"),
        "d8ce1a43471a1c13",
    ),
}


# Recognizers that find nothing in a text without this (checked on these exact patterns
# and flags, as above): an IBAN starts with two capital letters and two digits, and the
# pattern does not ignore case.
_TEXT_GATED: Final[dict[type[PatternRecognizer], tuple[re.Pattern[str], str]]] = {
    IbanRecognizer: (re.compile("[A-Z]{2}[0-9]{2}"), "b8252ecd14060252"),
}


def fingerprint(recognizer: PatternRecognizer) -> str:
    """A digest of a recognizer's patterns and flags, to notice when Presidio changes them."""
    patterns: list[Pattern] = recognizer.patterns  # type: ignore[has-type]
    text = "\n".join(p.regex for p in patterns)
    text += f"\n{int(recognizer.global_regex_flags or 0)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def token_scope(recognizer: EntityRecognizer) -> re.Pattern[str] | None:
    """The pattern of the tokens that can hold a match of ``recognizer``, when its matches
    are known to stay inside one whitespace-separated token."""
    return _checked(_TOKEN_SCOPED, recognizer)


def text_gate(recognizer: EntityRecognizer) -> re.Pattern[str] | None:
    """A pattern that finds something in every text where ``recognizer`` finds a match."""
    return _checked(_TEXT_GATED, recognizer)


def _checked(
    table: dict[type[PatternRecognizer], tuple[re.Pattern[str], str]],
    recognizer: EntityRecognizer,
) -> re.Pattern[str] | None:
    for cls, (pattern, digest) in table.items():
        if isinstance(recognizer, cls) and fingerprint(recognizer) == digest:
            return pattern
    return None


def finder(recognizer: EntityRecognizer) -> Finder:
    """A function of a text returning what ``recognizer.analyze`` returns for it (pattern
    recognizers need no NLP artifacts).

    A plain pattern recognizer's loop is run here without what Presidio adds around each
    pattern (two clock reads, a debug log call, an explanation object per match and a
    regex timeout), calling the recognizer's own validate_result and invalidate_result;
    recognizers with their own ``analyze`` (IBAN, phone numbers) are called as they are.
    """
    if not isinstance(recognizer, PatternRecognizer) or (
        type(recognizer).analyze is not PatternRecognizer.analyze
    ):
        gate = text_gate(recognizer)
        if gate is None:
            return lambda text: _analyze(recognizer, text)
        return lambda text: _analyze(recognizer, text) if gate.search(text) else []
    flags = recognizer.global_regex_flags
    patterns: list[Pattern] = recognizer.patterns  # type: ignore[has-type]
    compiled = [(p.score, regex.compile(p.regex, flags=flags)) for p in patterns]
    entity = recognizer.supported_entities[0]
    validate = recognizer.validate_result
    invalidate = recognizer.invalidate_result

    def scan(text: str, offset: int, results: list[RecognizerResult]) -> None:
        for base_score, pattern in compiled:
            for match in pattern.finditer(text):
                start, end = match.span()
                if start == end:
                    continue
                value = text[start:end]
                score = base_score
                valid = validate(value)
                if valid is not None:
                    score = EntityRecognizer.MAX_SCORE if valid else EntityRecognizer.MIN_SCORE
                if invalidate(value):
                    score = EntityRecognizer.MIN_SCORE
                if score > EntityRecognizer.MIN_SCORE:
                    results.append(RecognizerResult(entity, start + offset, end + offset, score))

    tokens = token_scope(recognizer)

    def find(text: str) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        if tokens is None:
            scan(text, 0, results)
        else:
            for token in tokens.finditer(text):
                scan(token.group(), token.start(), results)
        # remove_duplicates of nothing is nothing, but costs 3 µs to say so.
        return EntityRecognizer.remove_duplicates(results) if results else results

    return find


def _analyze(recognizer: EntityRecognizer, text: str) -> list[RecognizerResult]:
    # Pattern recognizers take no NLP artifacts (Presidio types them as required).
    results: list[Any] = recognizer.analyze(
        text,
        entities=recognizer.supported_entities,
        nlp_artifacts=None,  # type: ignore[arg-type]
    )
    return results
