"""Typed-text assembly: characters only in text.typed, key names only for special keys."""

from __future__ import annotations

import pytest

from keystep.capture.sources.base import KEY_PRESS, KEY_RELEASE, RawInput
from keystep.capture.typing import TypingAssembler
from keystep.trajectory.reduce import reduce_events

KEYCODES = {"shift": 50, "ctrl": 37, "enter": 36, "tab": 23, "a": 38, "b": 56, "1": 10}


def press(t: float, key: str, *, char: str | None = None, name: str | None = None) -> RawInput:
    return RawInput(t, KEY_PRESS, keycode=KEYCODES[key], char=char, name=name, base=key)


def release(t: float, key: str, *, char: str | None = None, name: str | None = None) -> RawInput:
    return RawInput(t, KEY_RELEASE, keycode=KEYCODES[key], char=char, name=name, base=key)


def run(seq: list[RawInput], window: int = 1) -> list[tuple[str, dict[str, object]]]:
    ta = TypingAssembler()
    out = []
    for raw in seq:
        evs = ta.press(raw, window) if raw.kind == KEY_PRESS else ta.release(raw)
        out += evs
    out += ta.flush()
    return [(e.kind, {k: v for k, v in e.data.items() if k != "t_end"}) for e in out]


CASES = [
    (
        "plain letters form one run and leave no key events",
        [
            press(1, "a", char="a"),
            release(1.1, "a", char="a"),
            press(1.2, "b", char="b"),
            release(1.3, "b", char="b"),
        ],
        [("text.typed", {"text": "ab", "window": 1})],
    ),
    (
        "shift changes the character between press and release; shift leaves no trace",
        [
            press(1, "shift", name="shift"),
            press(1.1, "a", char="A"),
            release(1.2, "shift", name="shift"),
            release(1.3, "a", char="a"),
        ],
        [("text.typed", {"text": "A", "window": 1})],
    ),
    (
        "a special key ends the run and is named",
        [
            press(1, "a", char="a"),
            release(1.1, "a", char="a"),
            press(1.2, "enter", name="enter"),
            release(1.3, "enter", name="enter"),
        ],
        [
            ("text.typed", {"text": "a", "window": 1}),
            ("key.down", {"key": "enter"}),
            ("key.up", {"key": "enter"}),
        ],
    ),
    (
        "ctrl turns a letter into a hotkey named by its key",
        [
            press(1, "ctrl", name="ctrl"),
            press(1.1, "a", char="a"),
            release(1.2, "a", char="a"),
            release(1.3, "ctrl", name="ctrl"),
        ],
        [
            ("key.down", {"key": "ctrl"}),
            ("key.down", {"key": "a"}),
            ("key.up", {"key": "a"}),
            ("key.up", {"key": "ctrl"}),
        ],
    ),
    (
        "shift+tab names shift because it modifies a special key",
        [
            press(1, "shift", name="shift"),
            press(1.1, "tab", name="tab"),
            release(1.2, "tab", name="tab"),
            release(1.3, "shift", name="shift"),
        ],
        [
            ("key.down", {"key": "shift"}),
            ("key.down", {"key": "tab"}),
            ("key.up", {"key": "tab"}),
            ("key.up", {"key": "shift"}),
        ],
    ),
    (
        "auto-repeat of a special key is flagged; of a letter it types more",
        [
            press(1, "enter", name="enter"),
            press(1.5, "enter", name="enter"),
            release(1.6, "enter", name="enter"),
            press(2, "1", char="1"),
            press(2.5, "1", char="1"),
            release(2.6, "1", char="1"),
        ],
        [
            ("key.down", {"key": "enter"}),
            ("key.down", {"key": "enter", "repeat": True}),
            ("key.up", {"key": "enter"}),
            ("text.typed", {"text": "11", "window": 1}),
        ],
    ),
]


@pytest.mark.parametrize(("why", "seq", "expected"), CASES, ids=[c[0] for c in CASES])
def test_typing(
    why: str, seq: list[RawInput], expected: list[tuple[str, dict[str, object]]]
) -> None:
    assert run(seq) == expected


def test_a_window_change_splits_runs_and_idle_closes_them() -> None:
    ta = TypingAssembler(idle_s=1.0)
    assert ta.starts_burst(press(1, "a", char="a"), 1)
    assert ta.press(press(1, "a", char="a"), 1) == []
    ta.release(release(1.1, "a", char="a"))
    assert not ta.starts_burst(press(1.2, "b", char="b"), 1)
    assert ta.starts_burst(press(1.2, "b", char="b"), 2)
    out = ta.press(press(1.2, "b", char="b"), 2)
    assert [(e.data["text"], e.data["window"]) for e in out] == [("a", 1)]
    assert ta.idle(1.5) == []
    assert [e.data["text"] for e in ta.idle(2.3)] == ["b"]


@pytest.mark.parametrize(("why", "seq", "expected"), CASES, ids=[c[0] for c in CASES])
def test_key_actions_start_exactly_where_the_reducer_makes_key_steps(
    why: str, seq: list[RawInput], expected: list[tuple[str, dict[str, object]]]
) -> None:
    """The recorder keeps a frame at every press flagged here; each key/hotkey step needs one."""
    ta = TypingAssembler()
    flagged, events = [], []
    for raw in seq:
        if raw.kind == KEY_PRESS:
            if ta.starts_key_action(raw):
                flagged.append(raw.t)
            events += ta.press(raw, 1)
        else:
            events += ta.release(raw)
    events += ta.flush()
    actions, _issues = reduce_events(events)
    assert flagged == [a.t for a in actions if a.action_type in ("key", "hotkey")]
