"""Spans of sensitive text and the detector contract every text detector follows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

EMAIL: Final = "EMAIL_ADDRESS"
PHONE: Final = "PHONE_NUMBER"
CREDIT_CARD: Final = "CREDIT_CARD"
IBAN: Final = "IBAN_CODE"
US_SSN: Final = "US_SSN"
US_ITIN: Final = "US_ITIN"
US_PASSPORT: Final = "US_PASSPORT"
US_DRIVER_LICENSE: Final = "US_DRIVER_LICENSE"
IP_ADDRESS: Final = "IP_ADDRESS"
CRYPTO: Final = "CRYPTO"
DATE_OF_BIRTH: Final = "DATE_OF_BIRTH"
PERSON: Final = "PERSON"
SECRET: Final = "SECRET"
PASSWORD: Final = "PASSWORD"
NUMBER: Final = "ID_NUMBER"
"""A long digit run seen on screen whose kind OCR noise does not let us pin down."""

ENTITIES: Final[tuple[str, ...]] = (
    PASSWORD,
    SECRET,
    CREDIT_CARD,
    US_SSN,
    EMAIL,
    PHONE,
    IBAN,
    US_ITIN,
    US_PASSPORT,
    US_DRIVER_LICENSE,
    IP_ADDRESS,
    CRYPTO,
    DATE_OF_BIRTH,
    PERSON,
    NUMBER,
)

# When two detectors claim overlapping text, the merged span keeps the entity listed
# first: a secret that also looks like a phone number must be replaced as a secret.
_PRIORITY: Final = {entity: rank for rank, entity in enumerate(ENTITIES)}


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open character range ``[start, end)`` of ``entity`` found by a detector."""

    start: int
    end: int
    entity: str
    score: float = 1.0


class TextDetector(Protocol):
    """Finds sensitive spans in a piece of text. Must be safe to call from several threads."""

    name: str

    def detect(self, text: str) -> list[Span]: ...


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Union overlapping or touching spans; the merged span takes the highest-priority entity."""
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    merged: list[Span] = []
    for span in ordered:
        if span.end <= span.start:
            continue
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            entity = min(last.entity, span.entity, key=lambda e: _PRIORITY.get(e, len(_PRIORITY)))
            merged[-1] = Span(
                last.start, max(last.end, span.end), entity, max(last.score, span.score)
            )
        else:
            merged.append(span)
    return merged


def run_detectors(detectors: Sequence[TextDetector], text: str) -> list[Span]:
    """All spans every detector finds in ``text``, merged."""
    found: list[Span] = []
    for detector in detectors:
        found.extend(detector.detect(text))
    return merge_spans(found)
