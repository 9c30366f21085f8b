"""Detectors for OCR output, where a misread character must not let a value through."""

from __future__ import annotations

import re
from typing import Final

from keystep.redact.normalize import OCR_DIGITS
from keystep.redact.spans import DATE_OF_BIRTH, EMAIL, IBAN, NUMBER, PASSWORD, SECRET, Span

# A run of digit-like characters (OCR reads 1 as l, 0 as O) with separators, as it comes
# out of OCR: "(555) 0l2-3456", "4111 1111 1111 111l".
_OCR_RUN: Final = re.compile(
    r"[(+]?[0-9OoDQIl|iZSBG@](?:[ \-.()/+_,:]{0,3}[0-9OoDQIl|iZSBG@x]){6,40}[)]?"
)


class OcrNumberDetector:
    """On screen: any digit run of 9 or more digits after undoing typical OCR confusions.

    OCR turns a Luhn-valid card into an invalid one with a single misread, so on screen
    every long number is masked (cards, SSNs, phones, account numbers alike).
    """

    name = "ocr-numbers"

    def detect(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for m in _OCR_RUN.finditer(text):
            raw = m.group()
            real_digits = sum(ch.isdigit() for ch in raw)
            folded = raw.translate(OCR_DIGITS)
            digits = sum(ch.isdigit() for ch in folded)
            # Most characters must be real digits, or prose like "lolOSSI" would count.
            if digits >= 9 and real_digits >= 0.6 * digits:
                start, end = m.start(), m.end()
                while start < end and not text[start].isalnum() and text[start] not in "(+@":
                    start += 1
                spans.append(Span(start, end, NUMBER, 0.7))
        return spans


# Tesseract reads "@" reliably but splits or garbles domains ("example. com", "exarnple").
_AT_TOKEN: Final = re.compile(
    r"[^\s@]*\s?@\s?\S*(?:(?<=[.,])\s?[A-Za-z]{2,6}\b|\s?[.,]\s?[A-Za-z]{2,6}\b|"
    r"\s(?:com|org|net|edu|gov|io|co|info|biz|us|uk|de|fr|nl|es|dev|app)\b)?"
)


class OcrEmailDetector:
    """On screen: any token with an "@" between characters is treated as an address."""

    name = "ocr-email"

    def detect(self, text: str) -> list[Span]:
        if "@" not in text:
            return []
        spans = []
        for m in _AT_TOKEN.finditer(text):
            local, _, domain = m.group().partition("@")
            # "typescript@5.4.2" is a package version; a domain starts with letters. An
            # address cut by the screen's edge ("krista25@") has no domain at all.
            if local.strip("([<\"'“ ") and not re.match(r"\s?\d", domain):
                spans.append(Span(m.start(), m.end(), EMAIL, 0.7))
        return spans


# user:password@host with OCR's stray spaces; the password may contain "@", so up to the
# last "@" that a host name follows.
_OCR_URL_CREDENTIALS: Final = re.compile(
    r":\s?//\s?[^\s:/@]*\s?:(?P<value>.{1,80}?)(?:@\s?[\w\-]+\s?[.:/]|$)"
)
# Prefixes of well-known key formats, which OCR keeps even when it garbles the rest.
_OCR_KEY_PREFIX: Final = re.compile(
    r"(?<![A-Za-z0-9])(?:A[KS]IA(?:[A-Z0-9]{2}|$)|gh[pousr](?:_|$)|glpat-|sk_(?:live|test)_|"
    r"[rp]k_live_|xox[abpr]-|eyJ[A-Za-z0-9]{4}|SG\.|npm_|pypi-)\S*"
)
# An IBAN as OCR reads it: country letters, check digits (O for 0, S for 5...), groups.
_OCR_IBAN: Final = re.compile(
    r"\b[A-Z]{2}[0-9OoQDSIlZB]{2}(?:\s?[A-Za-z0-9@]{3,5}){2,8}(?:\s?[A-Za-z0-9@]{1,4})?(?!\w)"
)


class OcrCredentialDetector:
    """On screen: passwords inside URLs, key prefixes and IBANs, tolerant of OCR's spaces
    and misreads."""

    name = "ocr-credentials"

    def detect(self, text: str) -> list[Span]:
        spans: list[Span] = []
        if "//" in text:
            spans.extend(
                Span(m.start("value"), m.end("value"), PASSWORD, 0.8)
                for m in _OCR_URL_CREDENTIALS.finditer(text)
            )
        spans.extend(Span(m.start(), m.end(), SECRET, 0.8) for m in _OCR_KEY_PREFIX.finditer(text))
        for m in _OCR_IBAN.finditer(text):
            if sum(ch.isdigit() for ch in m.group()) >= 8:
                spans.append(Span(m.start(), m.end(), IBAN, 0.8))
        return spans


# On screen a labelled secret's value runs to the end of its field: OCR splits it into
# words. Fields are separated by wide gaps, which the row text renders as 4 spaces.
_SCREEN_LABEL: Final = re.compile(
    r"(?<![A-Za-z0-9])(?P<label>pass(?:word|wd|phrase)|pwd|secret|token|api[\s_\-]?key|"
    r"access[\s_\-]?key(?:[\s_\-]?id)?|bearer|iban|born|dob|(?:\w{2,5}\s+)?of\s+birth)"
    r"(?P<sep>\s*[:=]\s*|\s+)[\"'“‘]?"
    r"(?P<value>\S(?:(?!\s{3}).){2,})",
    re.I,
)


_LABEL_ENTITY: Final = {
    "pass": PASSWORD,
    "pwd": PASSWORD,
    "iban": IBAN,
    "born": DATE_OF_BIRTH,
    "dob": DATE_OF_BIRTH,
}
_DATEISH: Final = re.compile(r"\d|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec", re.I)


class OcrLabelledValueDetector:
    """On screen: everything after a password/secret/token label up to the field's end."""

    name = "ocr-labelled-value"

    def detect(self, text: str) -> list[Span]:
        spans = []
        for m in _SCREEN_LABEL.finditer(text):
            value = m.group("value")
            if value.startswith("-"):
                continue  # "--password-stdin"
            label = m.group("label").lower()
            prose = re.match(r"^[a-z]+(?:\s[a-z]+)*[.!?]?$", value) is not None
            if prose and not m.group("sep").strip() and label not in ("bearer", "iban"):
                continue  # "Password reset link sent", "born in Ohio"
            # "Date of birth" as OCR reads it ("Dat of birth", "Oate of birth").
            entity = DATE_OF_BIRTH if "birth" in label else _LABEL_ENTITY.get(label[:4], SECRET)
            if entity == DATE_OF_BIRTH and not _DATEISH.search(value):
                continue  # a date of birth has digits or a month
            spans.append(Span(m.start("value"), m.end("value"), entity, 0.7))
        return spans
