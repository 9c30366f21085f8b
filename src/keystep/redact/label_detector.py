"""Values written right after a label that says what they are ("password: ...", "SSN=...")."""

from __future__ import annotations

import re
from typing import Final

from keystep.redact.prefilter import fast_start
from keystep.redact.spans import (
    CREDIT_CARD,
    DATE_OF_BIRTH,
    IBAN,
    PASSWORD,
    SECRET,
    US_SSN,
    Span,
)

_LABELS: Final[tuple[tuple[str, str], ...]] = (
    (r"pass(?:word|wd|phrase|code)?|pwd|pin(?:\s*code)?", PASSWORD),
    (
        r"(?:api|access|secret|auth|private)[\s_\-]*(?:key|token)(?:[\s_\-]*id)?|token|secret|"
        r"client[\s_\-]?secret",
        SECRET,
    ),
    (r"ssn|social\s+security(?:\s+(?:no|number|#))?", US_SSN),
    (r"iban|account\s+(?:no|number|#)|acct(?:\s+no)?", IBAN),
    (r"d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday|bo(?:rn|m)(?:\s+on)?", DATE_OF_BIRTH),
)
# "label: value" / "label = value" / "label is value". The value is one token, except for
# dates of birth and passphrases which may have spaces ("March 3, 1985"). fast_start lets
# these patterns skip the words that cannot start a label.
_RE: Final = fast_start(
    re.compile(
        r"(?<![A-Za-z0-9])(?:"
        + "|".join(f"(?P<g{i}>{pattern})" for i, (pattern, _) in enumerate(_LABELS))
        + r")(?P<sep>\s*[:=]\s*|\s+(?:is|was)\s+|\s*[:=]?\s*\"|\s*[:=]?\s*')"
        r"(?P<value>[^\s\"']{3,}(?:[ ,]{1,2}\d{1,4}[^\s\"']*){0,2})",
        re.I,
    )
)
_GROUPS: Final = tuple((f"g{i}", entity) for i, (_, entity) in enumerate(_LABELS))
_PROSE_VALUE: Final = re.compile(r"^[a-z]+[.,!?]?$")
_DOB: Final = fast_start(
    re.compile(
        r"(?<![\w])(?:d\.?o\.?b\.?|date\s*of\s*birth|birth\s*date|birthday|bo(?:rn|m)(?:\s+on)?)"
        r"[\s:=,]*(?P<value>\d{1,2}\s?[/.\-]\s?\d{1,2}\s?[/.\-]\s?\d{2,4}|"
        r"\d{4}\s?[/.\-]\s?\d{1,2}\s?[/.\-]\s?\d{1,2}|"
        r"[A-Z][a-z]{2,8}\.?\s*\d{1,2}(?:st|nd|rd|th)?,?\s*\d{4}|\d{1,2}\s*[A-Z][a-z]{2,8}\.?,?\s*\d{4})",
        re.I,
    )
)
# A number right after its label needs no colon: "SSN 123-45-6789", "card 4111 ...".
_NUMBER_LABELS: Final = fast_start(
    re.compile(
        r"(?<![A-Za-z0-9])(?P<label>ssn|social\s+security(?:\s+(?:no\.?|number|#))?|"
        r"(?:credit\s+|debit\s+)?card(?:\s+(?:no\.?|number|#))?)"
        r"[\s:#=]*(?P<value>\d[\d \-.]{3,28}\d)",
        re.I,
    )
)
# user:password@host in any URL; the password may itself contain "@" or ":".
_URL_CREDENTIALS: Final = re.compile(
    r"[a-z][a-z0-9+.\-]*://[^\s:/@]*:(?P<value>\S+)@[\w\-]+(?:\.[\w\-]+)*(?::\d+)?(?=[/\s\"'?#]|$)",
    re.I,
)


class LabelledValueDetector:
    """Masks the value that follows a password, secret, SSN or date-of-birth label."""

    name = "labelled-value"

    def detect(self, text: str) -> list[Span]:
        spans = []
        for m in _RE.finditer(text):
            value = m.group("value").rstrip(".,;")
            if value.endswith(")") and "(" not in value:
                value = value[:-1]
            if m.group("sep").strip() in ("is", "was") and _PROSE_VALUE.match(value):
                continue  # "the password is required", "the token was revoked"
            entity = next(entity for group, entity in _GROUPS if m.group(group) is not None)
            start = m.start("value")
            spans.append(Span(start, start + len(value), entity, 0.85))
        spans.extend(
            Span(m.start("value"), m.end("value"), DATE_OF_BIRTH) for m in _DOB.finditer(text)
        )
        for m in _NUMBER_LABELS.finditer(text):
            entity = (
                US_SSN if m.group("label").lower().startswith(("ssn", "social")) else CREDIT_CARD
            )
            spans.append(Span(m.start("value"), m.end("value"), entity, 0.8))
        if "://" in text:  # which every URL with credentials has
            spans.extend(
                Span(m.start("value"), m.end("value"), PASSWORD)
                for m in _URL_CREDENTIALS.finditer(text)
            )
        return spans
