"""Password-like tokens in typed text: the safety net where no platform reports a field."""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import pairwise
from typing import ClassVar, Final

from keystep.redact.spans import PASSWORD, Span

_TOKEN: Final = re.compile(r"\S{10,}")
# Quotes and brackets around a token are not part of it when they come in pairs
# ("(Xy7#kL9pQz)", 'Xy7#...'); alone they may be the password's own last character.
_PAIRS: Final = {'"': '"', "'": "'", "`": "`", "(": ")", "[": "]", "{": "}", "<": ">"}
_TRAILING: Final = ",;:"
_URLISH: Final = re.compile(
    r"^(?:[a-z][a-z0-9+.\-]*://|www\.|mailto:|[\w.\-]+@[\w\-]+\.)|"
    r"^(?:[A-Za-z0-9\-]+\.)+[a-z]{2,12}(?::\d+)?(?:/\S*)?$",
    re.I,
)
# Domains end in a lower-case TLD; a dotted token ending in random case is a JWT.
_DOMAIN: Final = re.compile(r"^(?:[A-Za-z0-9\-]+\.)+[a-z]{2,12}(?::\d+)?(?:/\S*)?$")
_PATHISH: Final = re.compile(r"^[\w.\-~]*(?:/[\w.\-@+]+){2,}/?$|^[A-Za-z]:\\")
_CODEISH: Final = re.compile(r"[()=\[\]{}]|->|::|\.\w+\(|^--?[a-z]")
_CALL: Final = re.compile(r"^[A-Za-z_][\w.]*(?:\(.*\)|\[.*\])[:;,]?$")
_DOTTED: Final = re.compile(r"^\w+(?:\.\w+)+$")
_VERSION: Final = re.compile(r"^v?\d+(?:\.\d+)+(?:[-+][\w.\-]+)?$", re.I)
_NUMBERISH: Final = re.compile(
    r"^[\d\s\-.,:/+()$€£%x]+$|"
    r"^\d{4}-\d{2}-\d{2}[T_ ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?$"
)


# Lower case, upper case, digits and symbols (not alphanumeric, not "_") in ASCII text.
_ASCII_SYMBOL: Final = re.compile(r"[^A-Za-z0-9_]")
_ASCII_CLASSES: Final = (
    re.compile("[a-z]"),
    re.compile("[A-Z]"),
    re.compile("[0-9]"),
    _ASCII_SYMBOL,
)


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s own character distribution."""
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _classes(token: str) -> int:
    if token.isascii():  # the same answer, five times faster
        return sum(pattern.search(token) is not None for pattern in _ASCII_CLASSES)
    lower = any(ch.islower() for ch in token)
    upper = any(ch.isupper() for ch in token)
    digit = any(ch.isdigit() for ch in token)
    return lower + upper + digit + _has_symbol(token)


def _has_symbol(token: str) -> bool:
    if token.isascii():
        return _ASCII_SYMBOL.search(token) is not None
    return any(not ch.isalnum() and ch != "_" for ch in token)


def _class_switches(token: str) -> float:
    """Share of neighbouring characters of different classes: high for random strings."""

    def cls(ch: str) -> int:
        return 0 if ch.islower() else 1 if ch.isupper() else 2 if ch.isdigit() else 3

    switches = sum(cls(a) != cls(b) for a, b in pairwise(token))
    return switches / max(1, len(token) - 1)


class PasswordTokenDetector:
    """Unquoted tokens of 10+ characters that look generated or deliberately mixed.

    It must not fire on prose, code identifiers, paths, URLs or numbers, so a token needs
    three character classes with a symbol, or letters and digits interleaved like a random
    string, or high entropy for its length.
    """

    name = "password-token"

    MIN_LENGTH: ClassVar = 10
    ENTROPY_BITS: ClassVar = 3.7

    def detect(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for m in _TOKEN.finditer(text):
            start, end = m.start(), m.end()
            while end > start and text[end - 1] in _TRAILING:
                end -= 1
            while end - start > 2 and _PAIRS.get(text[start]) == text[end - 1]:
                start += 1
                end -= 1
            while (
                start < end and text[start] in _PAIRS and _PAIRS[text[start]] not in text[start:end]
            ):
                start += 1  # an opening quote whose partner is past the token's end
            token = text[start:end]
            if self.is_password_like(token):
                spans.append(Span(start, end, PASSWORD, 0.8))
        return spans

    def is_password_like(self, token: str) -> bool:
        if len(token) < self.MIN_LENGTH or len(token) > 256:
            return False
        if not token.isascii():
            # Non-Latin words are prose; secrets are ASCII.
            return False
        urlish = _URLISH.search(token) is not None and (
            "://" in token or "@" in token or token.startswith("www.") or _DOMAIN.match(token)
        )
        if urlish or _PATHISH.search(token) or _NUMBERISH.match(token):
            return False
        classes = _classes(token)
        has_symbol = _has_symbol(token)
        if _CALL.match(token) or _VERSION.match(token):
            return False  # "getUserById2(user_id):", "items[idx2],", "v1.2.3-beta"
        if _DOTTED.match(token) and _class_switches(token) < 0.3:
            return False  # "self.user_repository" (a JWT's random case switches often)
        if _CODEISH.search(token) and classes < 4:
            return False
        if has_symbol:
            core = token.strip("-_.")
            if classes >= 4 or (classes == 3 and _class_switches(core) >= 0.3):
                # Hyphenated or dotted words ("state-of-the-art", "v1.2.3-beta") are not.
                words = re.split(r"[-_.]", core)
                return not all(w.isalpha() or w.isdigit() or not w for w in words)
            return False
        # Letters and digits only: identifiers ("getUserById2", "MAX_RETRIES_10") switch
        # class rarely; random strings ("aZ3kP9qLm2") switch almost every character.
        if classes >= 3 and _class_switches(token) >= 0.35:
            return True
        return len(token) >= 16 and classes >= 2 and shannon_entropy(token) >= self.ENTROPY_BITS
