"""Redactor.redact_text / redact_title: replacement, consistency, password fields, bad input."""

from __future__ import annotations

import time

import pytest

from keystep.redact import PASSWORD_FIELD_TOKEN, RedactionSettings, Redactor, is_password_context
from keystep.redact.normalize import leak_key
from keystep.redact.password_fields import is_echo_off_prompt

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@corp.example.com"


def test_values_become_realistic_surrogates(text_redactor: Redactor) -> None:
    text = f"mail {EMAIL}, card {CARD}, ssn 219-09-9999, thanks Priya Raman"
    out, count = text_redactor.redact_text(text)
    assert count == 4
    for value in (EMAIL, CARD, "219-09-9999", "Priya Raman"):
        assert leak_key(value) not in leak_key(out)
    assert "@" in out  # an email became an email, not a token
    assert "<" not in out


def test_surrogates_are_consistent_within_an_episode(text_redactor: Redactor) -> None:
    a, _ = text_redactor.redact_text(f"send it to {EMAIL}")
    b, _ = text_redactor.redact_text(f"cc {EMAIL.upper()} please")
    assert a.split()[-1] == b.split()[1]
    # The same card written differently is the same card.
    c, _ = text_redactor.redact_text("card 4111-1111-1111-1111")
    d, _ = text_redactor.redact_text("card 4111111111111111")
    assert c == d


def test_another_episode_gets_other_surrogates() -> None:
    settings = RedactionSettings(screen=False)
    with Redactor(settings, episode_salt=b"a") as one, Redactor(settings, episode_salt=b"b") as two:
        assert one.redact_text(EMAIL) != two.redact_text(EMAIL)
        assert one.redact_text(EMAIL) == one.redact_text(EMAIL)


def test_token_replacement_option() -> None:
    with Redactor(RedactionSettings(replacement="token", screen=False), episode_salt=b"s") as r:
        out, _ = r.redact_text(f"card {CARD} mail {EMAIL}")
    assert out == "card <CREDIT_CARD> mail <EMAIL_ADDRESS>"


@pytest.mark.parametrize(
    ("app", "title", "field"),
    [
        (None, "Sign in - Google Accounts", None),
        ("xterm", "[sudo] password for alex", None),
        ("xterm", "ssh alex@build01", None),
        ("pinentry-gnome3", "", None),
        ("firefox", "Checkout", "Card security code (CVV)"),
        (None, "Unlock Keyring", None),
        (None, "Enter passphrase for key '/home/a/.ssh/id_ed25519'", None),
        (None, "Bank", "PIN"),
    ],
)
def test_password_contexts(
    text_redactor: Redactor, app: str | None, title: str | None, field: str | None
) -> None:
    assert is_password_context(app=app, title=title, field=field)
    out, count = text_redactor.redact_text("hunter2 is short", app=app, title=title, field=field)
    assert (out, count) == (PASSWORD_FIELD_TOKEN, 1)


@pytest.mark.parametrize(
    ("app", "title", "field"),
    [
        ("gedit", "notes.txt - gedit", None),
        ("firefox", "Pinterest - Home", "Search"),
        ("xterm", "alex@build01: ~/src", None),
        ("firefox", "Blog index - Mozilla Firefox", None),
        ("thunderbird", "Secretary meeting notes", "Subject"),
    ],
)
def test_ordinary_contexts(app: str, title: str, field: str | None) -> None:
    assert not is_password_context(app=app, title=title, field=field)


def test_the_platform_decides_when_it_knows(text_redactor: Redactor) -> None:
    assert text_redactor.redact_text("x", password_field=True) == (PASSWORD_FIELD_TOKEN, 1)
    # The platform says this is the user-name field of a sign-in page: detectors only.
    assert text_redactor.redact_text("alex", title="Sign in", password_field=False) == ("alex", 0)
    assert text_redactor.redact_text("", password_field=True) == ("", 0)


def test_password_runs_have_no_length(text_redactor: Redactor) -> None:
    short, _ = text_redactor.redact_text("a", password_field=True)
    long, _ = text_redactor.redact_text("a" * 64, password_field=True)
    assert short == long == PASSWORD_FIELD_TOKEN


def test_echo_off_prompts() -> None:
    assert is_echo_off_prompt("$ sudo apt update\n[sudo] password for alex: ")
    assert is_echo_off_prompt("Enter passphrase for key '/home/a/.ssh/id_ed25519': ")
    assert not is_echo_off_prompt("$ echo password: is a word\nok\n")


def test_titles_are_redacted(text_redactor: Redactor) -> None:
    out, count = text_redactor.redact_title(f"Inbox - {EMAIL} - Mail")
    assert count == 1 and EMAIL not in out and out.startswith("Inbox - ")


@pytest.mark.parametrize(
    "text",
    [
        "card 4\u200b1\u200b1\u200b1 1111 1111 1111 ok",
        "card 4111\u20601111\u20601111\u20601111 ok",
        "card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 ok",
        "card 4111.1111.1111.1111 ok",
        "ssn 219\u200c-09\u200c-9999 ok",
        "مرحبا 4111 1111 1111 1111 שלום 👋🏽",
        "\u202ecard 4111-1111-1111-1111\u202c",
    ],
)
def test_disguised_numbers_do_not_leak(text_redactor: Redactor, text: str) -> None:
    out, count = text_redactor.redact_text(text)
    assert count >= 1
    assert "4111111111111111" not in leak_key(out)
    assert "219099999" not in leak_key(out)


@pytest.mark.parametrize(
    "text",
    ["", " ", "\u200b", "👋" * 500, "你好世界" * 300, "a" * 10_000, "\x00\x01\x02", "\ud7ff"],
)
def test_odd_input_does_not_crash(text_redactor: Redactor, text: str) -> None:
    out, _ = text_redactor.redact_text(text)
    assert isinstance(out, str)


def test_a_huge_paste_is_bounded_and_leak_free(text_redactor: Redactor) -> None:
    line = f"order for {EMAIL} paid with {CARD}; the quick brown fox jumps over the lazy dog\n"
    text = line * (1_000_000 // len(line))
    started = time.thread_time()
    out, count = text_redactor.redact_text(text)
    elapsed = time.thread_time() - started
    assert count == 2 * (1_000_000 // len(line))
    assert EMAIL not in out and CARD not in out
    assert elapsed < 10, f"1 MB took {elapsed:.1f} s of CPU"


def test_text_costs_under_5_ms_per_kb(text_redactor: Redactor) -> None:
    from keystep.redact.corpus import typed_cases

    texts = [c.text for c in typed_cases(300, seed=11)]
    kb = sum(len(t.encode()) for t in texts) / 1024
    for t in texts:  # the first pass draws the surrogates; time the steady state too
        text_redactor.redact_text(t)
    started = time.thread_time()
    for t in texts:
        text_redactor.redact_text(t)
    per_kb = (time.thread_time() - started) * 1000 / kb
    assert per_kb <= 5.0, f"{per_kb:.2f} ms/KB"
