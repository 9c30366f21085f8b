"""Each text detector on its own: what it must find and what it must leave alone."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystep.redact.label_detector import LabelledValueDetector
from keystep.redact.names_detector import NameDirectoryDetector
from keystep.redact.number_detector import _SEVEN_DIGITS, NumberDetector, luhn_ok
from keystep.redact.ocr_detectors import OcrEmailDetector, OcrNumberDetector
from keystep.redact.password_token_detector import (
    PasswordTokenDetector,
    _classes,
    _has_symbol,
)
from keystep.redact.presidio_detector import PresidioDetector
from keystep.redact.secrets_detector import SecretsDetector
from keystep.redact.spans import Span, merge_spans


def found(detector: object, text: str) -> list[tuple[str, str]]:
    return [(s.entity, text[s.start : s.end]) for s in merge_spans(detector.detect(text))]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "token",
    ["Xy7#kL9pQz", "C!7kFcLM#M9VT)", "aZ3kP9qLm2xR", "p@ssW0rd-2024!", "hT4$Lm9@Qz1&"],
)
def test_password_tokens_are_found(token: str) -> None:
    text = f"the wifi password is {token} btw"
    assert found(PasswordTokenDetector(), text) == [("PASSWORD", token)]


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog, unbelievably and uncharacteristically.",
        "def getUserById2(user_id): return self.user_repository.find_one(user_id)",
        "MAX_RETRY_COUNT_10 = configuration.retryPolicy.maximumAttempts",
        "see https://github.com/org/repo/blob/main/src/file.py#L10 for details",
        "/usr/local/lib/python3.11/site-packages/requests/adapters.py",
        "The state-of-the-art model v1.2.3-beta shipped on 2024-05-12T10:30:00",
        "npm install --save-dev typescript@5.4.2 eslint@9.1.0",
        "items[index2] = computeTotal(orderLines, taxRate)",
        "Internationalization and localization (i18n, l10n) are hard",
        "مرحبا بالعالم 你好世界 Привет-мир-очень-длинный",
        "www.example-company.com/products?id=12345&ref=homepage",
    ],
)
def test_password_tokens_leave_prose_code_and_urls_alone(text: str) -> None:
    assert found(PasswordTokenDetector(), text) == []


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
        (
            "token=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "SECRET",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        (
            'stripe.api_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"',
            "SECRET",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        ),
        ("db_password = 'S3cr3t!pass'", "SECRET", "S3cr3t!pass"),
        # Keywords in other languages are the keyword plugin's too (no English word here).
        ('contraseña = "hunter2hunter2"', "SECRET", "hunter2hunter2"),
    ],
)
def test_secrets_are_found(text: str, entity: str, value: str) -> None:
    assert (entity, value) in found(SecretsDetector(), text)


def test_private_key_block_is_one_secret() -> None:
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234\nabcd\n-----END RSA PRIVATE KEY-----"
    )
    assert found(SecretsDetector(), f"here:\n{key}\nthanks") == [("SECRET", key)]


@pytest.mark.parametrize(
    "text",
    ["my password is great", "the secret is out", "please rotate the token tomorrow"],
)
def test_secrets_leave_prose_alone(text: str) -> None:
    assert found(SecretsDetector(), text) == []


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("mail jane.doe@corp.example.com now", "EMAIL_ADDRESS", "jane.doe@corp.example.com"),
        ("IBAN DE89370400440532013000 ok", "IBAN_CODE", "DE89370400440532013000"),
        ("ssn 219-09-9999 for HR", "US_SSN", "219-09-9999"),
        ("server 10.0.0.12 is down", "IP_ADDRESS", "10.0.0.12"),
        ("card 4111 1111 1111 1111", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("she was born on 03/14/1985 in Ohio", "DATE_OF_BIRTH", "03/14/1985"),
        ("call +44 20 7946 0958 today", "PHONE_NUMBER", "+44 20 7946 0958"),
    ],
)
def test_presidio_finds_personal_data(text: str, entity: str, value: str) -> None:
    assert (entity, value) in found(PresidioDetector(("US",)), text)


def test_dates_without_birth_context_are_kept() -> None:
    assert found(PresidioDetector(("US",)), "the meeting is on 03/14/2025") == []


def test_country_recognizers_follow_the_manifest() -> None:
    nhs = "NHS number 401 023 2137"
    assert found(PresidioDetector(("US",)), nhs) == []
    assert ("UK_NHS", "401 023 2137") in found(PresidioDetector(("US", "GB")), nhs)
    with pytest.raises(ValueError):
        PresidioDetector(("XX",))


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("card 4111.1111.1111.1111 ok", "CREDIT_CARD", "4111.1111.1111.1111"),
        ("card 4111-1111-1111-1111 ok", "CREDIT_CARD", "4111-1111-1111-1111"),
        ("card 4111111111111111 ok", "CREDIT_CARD", "4111111111111111"),
        ("ssn 219.09.9999 ok", "US_SSN", "219.09.9999"),
        ("ssn 219 09 9999 ok", "US_SSN", "219 09 9999"),
        ("call (591)341-7776 now", "PHONE_NUMBER", "(591)341-7776"),
        ("call +1-537-640-6812x41586 now", "PHONE_NUMBER", "+1-537-640-6812x41586"),
        ("call 206.269.0743 now", "PHONE_NUMBER", "206.269.0743"),
        ("call 5274651778, thanks", "PHONE_NUMBER", "5274651778"),
    ],
)
def test_numbers_with_any_separator(text: str, entity: str, value: str) -> None:
    assert (entity, value) in found(NumberDetector(), text)


def test_numbers_leave_ordinary_figures_alone() -> None:
    text = "Build #4821 took 3m 12s; invoice $1,249.00 due 2026-03-15; epoch 1716400000"
    assert found(NumberDetector(), text) == []


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("password: hunter2", "PASSWORD", "hunter2"),
        ("PIN=4821", "PASSWORD", "4821"),
        ("GITHUB_TOKEN=abc123def456", "SECRET", "abc123def456"),
        ("postgres://app:PN7y@oNs^q*@db.internal:5432/app", "PASSWORD", "PN7y@oNs^q*"),
        ("Date of birth: January 11, 1947", "DATE_OF_BIRTH", "January 11, 1947"),
        ("SSN 10-90-9819", "US_SSN", "10-90-9819"),
    ],
)
def test_labelled_values(text: str, entity: str, value: str) -> None:
    assert (entity, value) in found(LabelledValueDetector(), text)


def test_labelled_values_leave_prose_alone() -> None:
    assert (
        found(LabelledValueDetector(), "the password is required and the token was revoked") == []
    )


def test_names_from_the_directory() -> None:
    detector = NameDirectoryDetector(["Priya Raman", "John Smith"])
    text = "Ask priya  raman or Smith, John; Priya R. knows. Johnson Smithers does not."
    assert [v for _, v in found(detector, text)] == ["priya  raman", "Smith, John", "Priya R."]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("SSN @95-39-3826, born", "@95-39-3826"),
        ("Card 5485 - 1195 - 2067-8427", "5485 - 1195 - 2067-8427"),
        ("card 4111 1111 1111 111l", "4111 1111 1111 111l"),
    ],
)
def test_ocr_numbers_survive_misreads(text: str, value: str) -> None:
    assert ("ID_NUMBER", value) in found(OcrNumberDetector(), text)


def test_ocr_email_with_stray_spaces_but_not_package_versions() -> None:
    assert found(OcrEmailDetector(), "Email: huntashley@ example org") == [
        ("EMAIL_ADDRESS", "huntashley@ example org")
    ]
    assert found(OcrEmailDetector(), "npm install typescript@5.4.2") == []


def test_merge_keeps_the_stronger_entity() -> None:
    spans = [Span(0, 10, "PHONE_NUMBER"), Span(5, 20, "SECRET"), Span(30, 35, "PERSON")]
    assert merge_spans(spans) == [Span(0, 20, "SECRET"), Span(30, 35, "PERSON")]


def _classes_by_str_methods(token: str) -> int:
    lower = any(ch.islower() for ch in token)
    upper = any(ch.isupper() for ch in token)
    digit = any(ch.isdigit() for ch in token)
    symbol = any(not ch.isalnum() and ch != "_" for ch in token)
    return lower + upper + digit + symbol


def test_character_classes_of_ascii_tokens_are_counted_as_str_methods_count_them() -> None:
    ascii_chars = [chr(i) for i in range(128)]
    tokens = ascii_chars + [a + b for a in ascii_chars for b in "aZ5_-é"] + ["aZ3kP9qLm2", "é1"]
    for token in tokens:
        assert _classes(token) == _classes_by_str_methods(token), repr(token)
        assert _has_symbol(token) == any(not ch.isalnum() and ch != "_" for ch in token)


@given(st.text(alphabet=st.sampled_from("0123456789\u0663\u0967\uff15\u00b2 -a."), max_size=30))
def test_the_number_detector_skips_exactly_the_texts_with_fewer_than_seven_digits(
    text: str,
) -> None:
    fewer = len(re.findall(r"\d", text)) < 7
    assert (_SEVEN_DIGITS.search(text) is None) == fewer
