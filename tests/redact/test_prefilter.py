"""Prefilters that let detectors skip work: they must never skip a match."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystep.redact import label_detector, number_detector, secrets_detector
from keystep.redact.corpus import directory, typed_cases
from keystep.redact.names_detector import NameDirectoryDetector
from keystep.redact.number_detector import NumberDetector
from keystep.redact.prefilter import fast_start, gate
from keystep.redact.secrets_detector import SecretsDetector, plugin_patterns

PLUGINS = [plugin for plugin, _ in SecretsDetector()._plugins]
PATTERNS = [(plugin, p) for plugin in PLUGINS for p in plugin_patterns(plugin) or []]
DIRECTORY = (*directory(7), "Priya Raman", "John Smith", "Ana Mar\u00eda L\u00f3pez")
CORPUS = [c.text for seed in (7, 303, 11) for c in typed_cases(300, seed=seed)]
# Lines a gate could get wrong: other letter cases (re's "ignore case" also matches the
# long s and the Kelvin sign), values at the ends of lines, secrets without keywords.
ADVERSARIAL = [
    'PASSWORD = "hunter2hunter2"',
    "pa\u017fsword = 'hunter2hunter2'",
    'api_\u212aey: "0123456789abcdef0123"',
    "DB_PASS='x9!kP2$mQ7'",
    'if ("s3cr3tValue" == my_password) {',
    'secret.assign("bar",17);',
    'private_key "abcdefgh";',
    'my_pwd => "hunter2hunter2"',
    "AKIAIOSFODNN7EXAMPLE",
    "aws_secret='wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYxx'",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "https://user:p4ssw0rd@example.com/path",
    "xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1",
    "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0",
    "//registry.npmjs.org/:_authToken=npm_abcdefghijklmnopqrstuvwxyz0123456789",
    "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
    "sk_live_abcdefghijklmnopqrstuvwx rk_live_abcdefghijklmnopqrstuvwx",
    "AC0123456789abcdef0123456789abcdef SK0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef-us12",
    "token = 'Zm9vYmFyYmF6cXV4cXV1eHh4eHh4eHh4eA=='",
    'hex = "8f14e45fceea167a5a36dedd4bea2543"',
    "-----BEGIN RSA PRIVATE KEY-----",
    "PuTTY-User-Key-File-2: ssh-rsa",
    "glpat-abcdefghij0123456789 GR1348941abcdefghij0123456789",
    "pypi-AgEIcHlwaS5vcmc" + "A" * 80,
    "AccountKey=" + "a" * 86 + "==",
]


@pytest.mark.parametrize(
    ("patterns", "admitted", "refused"),
    [
        ([r"ghp_[A-Za-z0-9]{36}"], "t=ghp_" + "a" * 36, "t=gho_" + "a" * 36),
        ([r"ghp_[A-Za-z0-9]{36}"], "x" * 50 + "ghp_", "ghp_" + "a" * 30),  # too short
        ([r"(?i)password\s*=\s*(['\"])\w+\1"], "PaSsWoRd = 'x'", "password = x"),
        ([r"(?i)key"], "\u212aEY", "kez"),  # the Kelvin sign is a K to re
        ([r"db_?pass"], "db_pass db-pass", "db-pass"),
        ([r"AKIA[0-9A-Z]{16}", r"(?i)aws.{0,20}?secret"], "AWS x secret", "aws x"),
        ([r"x{3,5}y"], "xxxy", "xxy"),
    ],
)
def test_a_gate_admits_what_its_patterns_can_match(
    patterns: list[str], admitted: str, refused: str
) -> None:
    g = gate(re.compile(p) for p in patterns)
    assert g is not None
    assert g.admits(admitted)
    assert not g.admits(refused)


@pytest.mark.parametrize("pattern", [r"\d+", r"[a-z]+\d", r"a|\w", r"(?i:abc)", ""])
def test_patterns_without_nameable_text_have_no_gate(pattern: str) -> None:
    assert gate([re.compile(pattern)]) is None


@pytest.mark.parametrize(
    ("plugin", "pattern"), PATTERNS, ids=lambda x: getattr(x, "pattern", type(x).__name__)[:40]
)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_every_line_a_pattern_matches_is_admitted(
    plugin: object, pattern: re.Pattern[str], data: st.DataObject
) -> None:
    needs = secrets_detector.plugin_gate(plugin)
    line = data.draw(st.from_regex(pattern))
    assert needs is None or needs.admits(line)


def test_plugins_report_only_what_their_patterns_match() -> None:
    lines = [line for text in CORPUS + ADVERSARIAL for line in text.splitlines()]
    found = 0
    for plugin in PLUGINS:
        patterns = plugin_patterns(plugin)
        if patterns is None:
            continue
        for line in lines:
            if plugin.analyze_line(filename="typed.txt", line=line, line_number=1):  # type: ignore[attr-defined]
                found += 1
                assert any(p.search(line) for p in patterns), (type(plugin).__name__, line)
    assert found > 100


def test_the_gated_detector_finds_what_running_every_plugin_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gated = SecretsDetector()
    monkeypatch.setattr(secrets_detector, "plugin_gate", lambda plugin: None)
    every_plugin = SecretsDetector()
    assert all(needs is None for _, needs in every_plugin._plugins)
    for text in CORPUS + ADVERSARIAL:
        assert gated.detect(text) == every_plugin.detect(text), text


def _unwrapped(fast: re.Pattern[str]) -> re.Pattern[str]:
    """The pattern fast_start was given: "(?=<first characters>)(?:<pattern>)"."""
    assert fast.pattern.startswith("(?="), fast.pattern
    return re.compile(fast.pattern.split(")(?:", 1)[1][:-1], fast.flags)


# The patterns keystep hands to fast_start, and text to run them on: the corpus and
# characters that re's "ignore case" treats as other letters (the long s is an s, the
# Kelvin sign a K, the dotless i an I).
FAST = [
    label_detector._RE,
    label_detector._DOB,
    label_detector._NUMBER_LABELS,
    NumberDetector.SSN_RE,
    NumberDetector.PHONE_RE,
    number_detector._DIGIT_RUN,
    NameDirectoryDetector(DIRECTORY)._re,
    NameDirectoryDetector(DIRECTORY, ocr=True)._re,
]
TRICKY = "Pp\u017fSs\u212aKk\u0131Ii\u0130\u00df\u1e9e-_.:=' \n0123456789\u0663"


def _matches(pattern: re.Pattern[str], text: str) -> list[tuple[object, ...]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


@pytest.mark.parametrize("fast", FAST, ids=lambda p: p.pattern[:30])
def test_fast_start_finds_the_same_matches(fast: re.Pattern[str]) -> None:
    assert fast is not None
    slow = _unwrapped(fast)
    texts = (
        CORPUS
        + ADVERSARIAL
        + [
            "Priya Raman, RAMAN, PRIYA, \u017fmith john, john \u017fmith, Ana Mar\u00eda Lopez",
            "pa\u017f\u017fword: hunter2 \u017f\u017fn 219-09-9999 DOB: 01/02/1990 card 4111 1111",
        ]
    )
    for text in texts:
        assert _matches(fast, text) == _matches(slow, text), text


@pytest.mark.parametrize("fast", FAST, ids=lambda p: p.pattern[:30])
@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(TRICKY + "abcdehjmnoprstwyz"), max_size=40))
def test_fast_start_finds_the_same_matches_in_any_text(fast: re.Pattern[str], text: str) -> None:
    assert _matches(fast, text) == _matches(_unwrapped(fast), text)


def test_a_class_of_one_letter_matches_what_the_letter_matches() -> None:
    # What fast_start relies on under "ignore case": [c] and c accept the same characters.
    everything = "".join(chr(i) for i in range(0x110000) if not 0xD800 <= i < 0xE000)
    for c in sorted(set(string.ascii_letters + "\u00e1\u00df\u0131\u0130\u017f\u212a\u03c3")):
        literal = set(re.findall(re.escape(c), everything, re.I))
        assert set(re.findall(f"[{re.escape(c)}]", everything, re.I)) == literal, c


@pytest.mark.parametrize(
    "pattern",
    [r"a*", r"(?:x|)y*", r"\w+", r"(?i)(?<!x)abc", r"(?x)(?<!x) a b # comment", r"(?i:a)b", r".b"],
)
def test_fast_start_leaves_patterns_it_cannot_read(pattern: str) -> None:
    p = re.compile(pattern)
    assert fast_start(p) is p
