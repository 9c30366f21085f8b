"""Personal data found by Presidio's pattern recognizers, offline, for the manifest's countries."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import tldextract
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    AuMedicareRecognizer,
    AuTfnRecognizer,
    CaSinRecognizer,
    CreditCardRecognizer,
    CryptoRecognizer,
    DateRecognizer,
    EmailRecognizer,
    EsNieRecognizer,
    EsNifRecognizer,
    IbanRecognizer,
    InAadhaarRecognizer,
    InPanRecognizer,
    IpRecognizer,
    ItFiscalCodeRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    SgFinRecognizer,
    UkNinoRecognizer,
    UsItinRecognizer,
    UsLicenseRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)

from keystep.redact.presidio_patterns import Finder, finder
from keystep.redact.spans import (
    CREDIT_CARD,
    CRYPTO,
    DATE_OF_BIRTH,
    EMAIL,
    IBAN,
    IP_ADDRESS,
    PHONE,
    US_DRIVER_LICENSE,
    US_ITIN,
    US_PASSPORT,
    US_SSN,
    Span,
)

# The public-suffix list shipped inside tldextract; never fetched (no network, ever).
_TLD: Final = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer validating domains against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return bool(_TLD(pattern_text).fqdn)


@dataclass(frozen=True)
class _Rule:
    make: Callable[[], EntityRecognizer]
    needs: str  # "@", "+" or "digit": skip the recognizer on text without it
    rename: dict[str, str]  # Presidio entity -> keystep entity
    context_only: bool = False  # weak patterns count only next to one of their context words


_DOB_CONTEXT: Final = ("born", "birth", "dob", "d.o.b", "birthday")

# Recognizers that apply everywhere.
_GENERIC: Final[tuple[_Rule, ...]] = (
    _Rule(OfflineEmailRecognizer, "@", {"EMAIL_ADDRESS": EMAIL}),
    _Rule(CreditCardRecognizer, "digit", {"CREDIT_CARD": CREDIT_CARD}),
    _Rule(IbanRecognizer, "digit", {"IBAN_CODE": IBAN}),
    _Rule(IpRecognizer, "digit", {"IP_ADDRESS": IP_ADDRESS}),
    _Rule(CryptoRecognizer, "digit", {"CRYPTO": CRYPTO}),
    _Rule(
        lambda: DateRecognizer(context=list(_DOB_CONTEXT)),
        "digit",
        {"DATE_TIME": DATE_OF_BIRTH},
        context_only=True,
    ),
)
# Country-specific recognizers: only the manifest's countries are switched on.
_BY_COUNTRY: Final[dict[str, tuple[_Rule, ...]]] = {
    "US": (
        _Rule(UsSsnRecognizer, "digit", {"US_SSN": US_SSN}),
        _Rule(UsItinRecognizer, "digit", {"US_ITIN": US_ITIN}),
        _Rule(UsPassportRecognizer, "digit", {"US_PASSPORT": US_PASSPORT}, context_only=True),
        _Rule(
            UsLicenseRecognizer,
            "digit",
            {"US_DRIVER_LICENSE": US_DRIVER_LICENSE},
            context_only=True,
        ),
    ),
    "GB": (
        _Rule(NhsRecognizer, "digit", {"UK_NHS": "UK_NHS"}),
        _Rule(UkNinoRecognizer, "digit", {"UK_NINO": "UK_NINO"}),
    ),
    "ES": (
        _Rule(EsNifRecognizer, "digit", {"ES_NIF": "ES_NIF"}),
        _Rule(EsNieRecognizer, "digit", {"ES_NIE": "ES_NIE"}),
    ),
    "IT": (_Rule(ItFiscalCodeRecognizer, "digit", {"IT_FISCAL_CODE": "IT_FISCAL_CODE"}),),
    "IN": (
        _Rule(InAadhaarRecognizer, "digit", {"IN_AADHAAR": "IN_AADHAAR"}),
        _Rule(InPanRecognizer, "digit", {"IN_PAN": "IN_PAN"}),
    ),
    "AU": (
        _Rule(AuTfnRecognizer, "digit", {"AU_TFN": "AU_TFN"}),
        _Rule(AuMedicareRecognizer, "digit", {"AU_MEDICARE": "AU_MEDICARE"}),
    ),
    "CA": (_Rule(CaSinRecognizer, "digit", {"CA_SIN": "CA_SIN"}),),
    "SG": (_Rule(SgFinRecognizer, "digit", {"SG_NRIC_FIN": "SG_NRIC_FIN"}),),
}
SUPPORTED_COUNTRIES: Final = tuple(sorted(_BY_COUNTRY))
# phonenumbers calls the United Kingdom "GB" too; Presidio's default list says "UK".
_PHONE_REGIONS: Final = ("US", "GB", "DE", "FR", "IN", "CA", "AU", "ES", "IT", "SG")
_DIGIT: Final = re.compile(r"\d")
_PLUS: Final = re.compile(r"\+\s?\d")
_CONTEXT_BEFORE: Final = 48
_CONTEXT_AFTER: Final = 24
_MIN_SCORE: Final = 0.5


class PresidioDetector:
    """Runs Presidio recognizers directly on the text.

    Pattern recognizers need no NLP artifacts, so no spaCy pipeline runs: context (which
    Presidio scores with lemmas from a model we do not ship) is checked here by looking for
    the recognizer's own context words around a weak match. Each recognizer runs through
    ``presidio_patterns.finder``, which finds what its ``analyze`` finds at a fraction of the
    cost. That keeps construction under a second and text redaction far under 5 ms per KB.
    """

    name = "presidio"

    def __init__(self, countries: Sequence[str] = ("US",)) -> None:
        wanted = {c.upper().replace("UK", "GB") for c in countries}
        unknown = wanted - set(_BY_COUNTRY)
        if unknown:
            raise ValueError(
                f"no recognizers for countries {sorted(unknown)}; known: {SUPPORTED_COUNTRIES}"
            )
        rules = list(_GENERIC)
        for country in sorted(wanted):
            rules.extend(_BY_COUNTRY[country])
        # North American numbers are NumberDetector's (a regex, 20x cheaper than
        # phonenumbers); phonenumbers runs for international formats ("+44 20 ...") and for
        # the national formats of the other countries the manifest names.
        regions = tuple(r for r in _PHONE_REGIONS if r in wanted or r == "US")
        self._phone_needs = "digit" if wanted - {"US", "CA"} else "+"
        rules.append(
            _Rule(
                lambda: PhoneRecognizer(supported_regions=regions),
                self._phone_needs,
                {"PHONE_NUMBER": PHONE},
            )
        )
        self.recognizers: tuple[EntityRecognizer, ...] = tuple(rule.make() for rule in rules)
        self._recognizers: list[tuple[Finder, _Rule, re.Pattern[str] | None]] = []
        for rule, recognizer in zip(rules, self.recognizers, strict=True):
            words = [w.lower() for w in (getattr(recognizer, "context", None) or ()) if w]
            # Whole words only: Presidio's "lic" (licence) must not fire on "public".
            context = (
                re.compile(r"(?<![a-z])(?:" + "|".join(map(re.escape, words)) + r")(?![a-z])")
                if words
                else None
            )
            self._recognizers.append((finder(recognizer), rule, context))
        # Compile every pattern now rather than racing on it from several threads later.
        self.detect("warm up 4111 1111 1111 1111 a@b.example 10.0.0.1 born 01/02/1990")

    def detect(self, text: str) -> list[Span]:
        has_digit = _DIGIT.search(text) is not None
        present = {
            "@": "@" in text,
            "digit": has_digit,
            "+": has_digit and _PLUS.search(text) is not None,
        }
        if not (present["@"] or has_digit):
            return []
        lowered = text.lower()
        spans: list[Span] = []
        for find, rule, context in self._recognizers:
            if not present[rule.needs]:
                continue
            if rule.context_only and (context is None or context.search(lowered) is None):
                continue
            for offset, part in self._parts(text, rule):
                for result in find(part):
                    spans.extend(self._accept(result, offset, rule, context, lowered))
        return spans

    @staticmethod
    def _parts(text: str, rule: _Rule) -> list[tuple[int, str]]:
        """The text, or for international phone numbers only the stretches around each
        "+<digit>": phonenumbers costs 1.5 ms per KB when run over everything."""
        if rule.needs != "+":
            return [(0, text)]
        parts: list[tuple[int, str]] = []
        for m in _PLUS.finditer(text):
            start, end = max(0, m.start() - 4), min(len(text), m.start() + 40)
            if parts and start <= parts[-1][0] + len(parts[-1][1]):
                start = parts[-1][0]
                parts.pop()
            parts.append((start, text[start:end]))
        return parts

    @staticmethod
    def _accept(
        result: RecognizerResult,
        offset: int,
        rule: _Rule,
        context: re.Pattern[str] | None,
        lowered: str,
    ) -> list[Span]:
        entity = rule.rename.get(result.entity_type)
        if entity is None:
            return []
        start, end = result.start + offset, result.end + offset
        near = lowered[max(0, start - _CONTEXT_BEFORE) : end + _CONTEXT_AFTER]
        in_context = context is not None and context.search(near) is not None
        if rule.context_only and not in_context:
            return []
        if result.score >= _MIN_SCORE or in_context or rule.context_only:
            return [Span(start, end, entity, float(result.score))]
        return []
