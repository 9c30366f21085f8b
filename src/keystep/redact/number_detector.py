"""Card numbers, SSNs and phone numbers written with any separators between the digits."""

from __future__ import annotations

import re
from typing import ClassVar, Final

from keystep.redact.prefilter import fast_start
from keystep.redact.spans import CREDIT_CARD, PHONE, US_SSN, Span

# Digits split by single spaces, dashes, dots, slashes or underscores (also no-break and
# thin spaces): "4111 1111 1111 1111", "4111-1111-1111-1111", "4.1.1.1...".
_SEP: Final = r"[ \-.\u00a0\u2009\u202f_/]"
# Every value found here has at least seven digits.
_SEVEN_DIGITS: Final = re.compile(r"\d(?:\D*\d){6}")
_DIGIT_RUN: Final = fast_start(re.compile(rf"(?<![\w.\-])\d(?:{_SEP}?\d){{8,22}}(?![\w\-])"))


def luhn_ok(digits: str) -> bool:
    """True when ``digits`` passes the Luhn check that every card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class NumberDetector:
    """Cards (13-19 digits, Luhn), SSNs (3-2-4) and North American phone numbers."""

    name = "numbers"

    # fast_start: positions where no value can start are skipped at once.
    SSN_RE: ClassVar = fast_start(
        re.compile(
            r"(?<![\w\-])(?!000|666|9\d\d)\d{3}([ \-.\u00a0]?)(?!00)\d{2}\1(?!0000)\d{4}(?![\w\-])"
        )
    )
    PHONE_RE: ClassVar = fast_start(
        re.compile(
            r"(?<![\w+])(?:(?:\+|00)?1[ \-.]?|001[ \-.])?"
            r"(?:\(\d{3}\)[ \-.]?|\d{3}[ \-.])\d{3}[ \-.]\d{4}"
            r"(?:\s?(?:x|ext\.?|#)\s?\d{1,6})?(?![\w])"
            # Ten digits in a row with a valid area code and exchange (epoch times start
            # with 1).
            r"|(?<![\w+.\-])[2-9]\d{2}[2-9]\d{6}(?![\w.\-])"
        )
    )

    def detect(self, text: str) -> list[Span]:
        if _SEVEN_DIGITS.search(text) is None:
            return []
        spans: list[Span] = []
        for m in _DIGIT_RUN.finditer(text):
            digits = "".join(filter(str.isdigit, m.group()))
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                spans.append(Span(m.start(), m.end(), CREDIT_CARD, 1.0))
        spans.extend(Span(m.start(), m.end(), US_SSN, 0.9) for m in self.SSN_RE.finditer(text))
        spans.extend(Span(m.start(), m.end(), PHONE, 0.8) for m in self.PHONE_RE.finditer(text))
        return spans
