"""The fast path through Presidio's recognizers finds exactly what their analyze finds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from presidio_analyzer import EntityRecognizer, Pattern
from presidio_analyzer.predefined_recognizers import (
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
)

from keystep.redact.corpus import typed_cases
from keystep.redact.presidio_detector import (
    SUPPORTED_COUNTRIES,
    OfflineEmailRecognizer,
    PresidioDetector,
)
from keystep.redact.presidio_patterns import finder, text_gate, token_scope

# Every recognizer keystep can switch on (all countries, international phone numbers).
RECOGNIZERS = PresidioDetector(SUPPORTED_COUNTRIES).recognizers
CORPUS = [c.text for seed in (7, 303, 11) for c in typed_cases(300, seed=seed)]
# Edges of the shortcuts: whitespace of every kind next to values, values inside longer
# tokens, punctuation around them, non-ASCII digits and letters, several values in a token.
ADVERSARIAL = [
    "mail a@b.com,c@d.org;e@f.net",
    "(jane.doe@example.com)\tjohn@example.co.uk\nbob@example.io",
    "x@y.com\u00a0z@w.com\u2003v@u.com",
    "a@b@c.com @@ foo@ @bar.com user@localhost user@ex-ample.com.",
    "ops+alerts@example.com's <ops@example.com> 'q@example.com'",
    "ünïcødé@exämple.de 名前@例え.jp x@xn--bcher-kva.example",
    "10.0.0.1 10.0.0.1/24 10.0.0.256 1.2.3.4.5 v1.2.3.4 ip=192.168.1.10, ",
    ":: fe80:: 2001:db8:: 2001:db8::1 ::1 [::1]:8080 ::ffff:10.0.0.1 ::/0",
    "fe80::1%eth0 2001:0db8:85a3:0000:0000:8a2e:0370:7334/64 12:30:45 a:b:c",
    "http://10.1.2.3:8080/x https://[2001:db8::2]:443/ user@10.0.0.7",
    "١٢٣.٤٥.٦٧.٨٩ 1.2.3.٤ ::١ ip\u00a010.0.0.9\u2028host 172.16.0.1",
    "DE89370400440532013000 DE89 3704 0044 0532 0130 00 de89370400440532013000",
    "GB82WEST12345698765432 iban: GB82-WEST-1234-5698-7654-32 XX00 AB12",
    "card 4111 1111 1111 1111, ssn 219-09-9999, itin 912-70-1234 DOB 01/02/1990",
    # Matches that validate_result or invalidate_result turn down.
    "ssn 666-12-3456 000-12-3456 123-45-6789 111-11-1111 219.09-9999 219-00-9999 21909 9999",
    "card 4111 1111 1111 1112 1::2::3 10.0.0.1/33 ::ffff:999.1.1.1 bc1qar0srrr7xfkvy5l643",
    "",
    " ",
    "@",
]


def results(found: list[Any]) -> list[tuple[str, int, int, float]]:
    return sorted((r.entity_type, r.start, r.end, r.score) for r in found)


def analyze(recognizer: EntityRecognizer, text: str) -> list[tuple[str, int, int, float]]:
    found = recognizer.analyze(text, entities=recognizer.supported_entities, nlp_artifacts=None)  # type: ignore[arg-type]
    return results(found)


@pytest.mark.parametrize("recognizer", RECOGNIZERS, ids=lambda r: type(r).__name__)
def test_the_fast_path_finds_what_analyze_finds(recognizer: EntityRecognizer) -> None:
    find = finder(recognizer)
    for text in CORPUS + ADVERSARIAL:
        assert results(find(text)) == analyze(recognizer, text), text


def test_the_shortcuts_apply_to_the_installed_presidio() -> None:
    # Failing here means Presidio changed these patterns: the fast path then scans whole
    # texts (still exact, only slower). Check the argument in presidio_patterns.py against
    # the new patterns and update the fingerprints.
    assert token_scope(EmailRecognizer()) is not None
    assert token_scope(IpRecognizer()) is not None
    assert text_gate(IbanRecognizer()) is not None


def test_changed_patterns_lose_the_shortcut_and_stay_exact() -> None:
    loose = OfflineEmailRecognizer(patterns=[Pattern("loose", r"\S+ at \S+", 0.5)])
    assert token_scope(loose) is None
    text = "write to jane at example.com or a@b.com"
    assert results(finder(loose)(text)) == analyze(loose, text) != []


_EDGES = " \t\n\r\x0b\x0c\u00a0\u2028\u3000,;()<>[]'\"/%-_.:@+="
_NOISE = st.text(alphabet=st.sampled_from(_EDGES + "0123456789abcdefABCDEFxyzé١"), max_size=24)


def _with_matches(recognizer: EntityRecognizer) -> st.SearchStrategy[str]:
    """Texts holding matches of the recognizer's patterns among separators and noise."""
    patterns = [p.regex for p in recognizer.patterns]  # type: ignore[attr-defined]
    piece = st.one_of(_NOISE, *(st.from_regex(p) for p in patterns))
    return st.lists(piece, max_size=5).map("".join)


@pytest.mark.parametrize(
    "recognizer", [OfflineEmailRecognizer(), IpRecognizer(), IbanRecognizer()], ids=lambda r: r.name
)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_the_shortcuts_miss_nothing_on_generated_text(
    recognizer: EntityRecognizer, data: st.DataObject
) -> None:
    text = data.draw(_with_matches(recognizer))
    assert results(finder(recognizer)(text)) == analyze(recognizer, text)
