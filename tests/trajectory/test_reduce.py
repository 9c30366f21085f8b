"""Action reduction: raw events in, the actions a person performed out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystep.model.events import Event
from keystep.trajectory.actions import Action
from keystep.trajectory.reduce import Reducer, reduce_events


def ev(spec: list[tuple[Any, ...]]) -> list[Event]:
    """Events from (t, kind, data) triples, with eids "b:<i>" as the batch decoder sets."""
    return [Event(t, kind, dict(data), f"b:{i}") for i, (t, kind, data) in enumerate(spec)]


def summary(a: Action) -> tuple[Any, ...]:
    return (a.action_type, a.x, a.y, a.to_x, a.to_y, a.text, a.keys, a.dx, a.dy, a.presses)


def down(t: float, x: int, y: int, b: str = "left") -> tuple[Any, ...]:
    return (t, "pointer.down", {"x": x, "y": y, "button": b})


def up(t: float, x: int, y: int, b: str = "left") -> tuple[Any, ...]:
    return (t, "pointer.up", {"x": x, "y": y, "button": b})


def kd(t: float, key: str, repeat: bool = False) -> tuple[Any, ...]:
    return (t, "key.down", {"key": key, "repeat": repeat})


def ku(t: float, key: str) -> tuple[Any, ...]:
    return (t, "key.up", {"key": key})


def scroll(t: float, x: int, y: int, dy: int = 0, dx: int = 0) -> tuple[Any, ...]:
    return (t, "pointer.scroll", {"x": x, "y": y, "dx": dx, "dy": dy})


def typed(t: float, text: str, t_end: float, window: str = "w1") -> tuple[Any, ...]:
    return (t, "text.typed", {"text": text, "t_end": t_end, "window": window})


CASES: list[tuple[str, list[tuple[Any, ...]], list[tuple[Any, ...]]]] = [
    (
        "click",
        [down(0, 10, 20), up(0.08, 10, 20)],
        [("click", 10, 20, None, None, None, (), None, None, 1)],
    ),
    (
        "click with jitter under the drag threshold",
        [down(0, 10, 20), (0.04, "pointer.move", {"x": 12, "y": 21}), up(0.08, 12, 21)],
        [("click", 10, 20, None, None, None, (), None, None, 1)],
    ),
    (
        "right click",
        [down(0, 5, 6, "right"), up(0.1, 5, 6, "right")],
        [("right_click", 5, 6, None, None, None, (), None, None, 1)],
    ),
    (
        "middle click",
        [down(0, 5, 6, "middle"), up(0.1, 5, 6, "middle")],
        [("middle_click", 5, 6, None, None, None, (), None, None, 1)],
    ),
    (
        "double click",
        [down(0, 50, 50), up(0.05, 50, 50), down(0.2, 51, 50), up(0.25, 51, 50)],
        [("double_click", 50, 50, None, None, None, (), None, None, 1)],
    ),
    (
        "triple click",
        [
            down(0, 50, 50),
            up(0.05, 50, 50),
            down(0.2, 50, 50),
            up(0.25, 50, 50),
            down(0.4, 50, 51),
            up(0.45, 50, 51),
        ],
        [("triple_click", 50, 50, None, None, None, (), None, None, 1)],
    ),
    (
        "two clicks too slow for a double click",
        [down(0, 50, 50), up(0.05, 50, 50), down(0.9, 50, 50), up(0.95, 50, 50)],
        [("click", 50, 50, None, None, None, (), None, None, 1)] * 2,
    ),
    (
        "two clicks too far apart for a double click",
        [down(0, 50, 50), up(0.05, 50, 50), down(0.2, 90, 50), up(0.25, 90, 50)],
        [
            ("click", 50, 50, None, None, None, (), None, None, 1),
            ("click", 90, 50, None, None, None, (), None, None, 1),
        ],
    ),
    (
        "four quick clicks: a triple then a click",
        [down(0.2 * i, 50, 50) for i in range(1)]
        + [up(0.05, 50, 50), down(0.2, 50, 50), up(0.25, 50, 50), down(0.4, 50, 50)]
        + [up(0.45, 50, 50), down(0.6, 50, 50), up(0.65, 50, 50)],
        [
            ("triple_click", 50, 50, None, None, None, (), None, None, 1),
            ("click", 50, 50, None, None, None, (), None, None, 1),
        ],
    ),
    (
        "drag",
        [down(0, 100, 100), (0.1, "pointer.move", {"x": 150, "y": 120}), up(0.3, 200, 140)],
        [("drag", 100, 100, 200, 140, None, (), None, None, 1)],
    ),
    (
        "shift+click keeps the modifier",
        [kd(0, "shift"), down(0.1, 7, 8), up(0.15, 7, 8), ku(0.3, "shift")],
        [("click", 7, 8, None, None, None, ("shift",), None, None, 1)],
    ),
    (
        "scroll steps merge",
        [scroll(0, 300, 300, dy=1), scroll(0.05, 300, 300, dy=1), scroll(0.1, 301, 300, dy=1)],
        [("scroll", 300, 300, None, None, None, (), 0, 3, 1)],
    ),
    (
        "scroll down then up: two actions",
        [scroll(0, 300, 300, dy=1), scroll(0.05, 300, 300, dy=1), scroll(0.1, 300, 300, dy=-1)],
        [
            ("scroll", 300, 300, None, None, None, (), 0, 2, 1),
            ("scroll", 300, 300, None, None, None, (), 0, -1, 1),
        ],
    ),
    (
        "scrolls separated by a pause",
        [scroll(0, 300, 300, dy=1), scroll(2.0, 300, 300, dy=1)],
        [("scroll", 300, 300, None, None, None, (), 0, 1, 1)] * 2,
    ),
    (
        "horizontal scroll",
        [scroll(0, 30, 40, dx=2), scroll(0.05, 30, 40, dx=1)],
        [("scroll", 30, 40, None, None, None, (), 3, 0, 1)],
    ),
    (
        "typing runs in one window merge",
        [typed(0, "Hello", 0.5), typed(0.8, " World", 1.2)],
        [("type", None, None, None, None, "Hello World", (), None, None, 1)],
    ),
    (
        "typing after a new frame is a new step",
        [
            typed(0, "a", 0.2),
            (0.5, "screen.frame", {"frame": 1, "rect": [0, 0, 1, 1], "w": 1, "h": 1}),
            typed(0.6, "b", 0.7),
        ],
        [
            ("type", None, None, None, None, "a", (), None, None, 1),
            ("type", None, None, None, None, "b", (), None, None, 1),
        ],
    ),
    (
        "typing in two windows stays apart",
        [typed(0, "a", 0.1), typed(0.2, "b", 0.3, window="w2")],
        [
            ("type", None, None, None, None, "a", (), None, None, 1),
            ("type", None, None, None, None, "b", (), None, None, 1),
        ],
    ),
    (
        "shift while typing is no action",
        [kd(0, "shift"), typed(0, "HI", 0.2), ku(0.25, "shift")],
        [("type", None, None, None, None, "HI", (), None, None, 1)],
    ),
    (
        "hotkey ctrl+shift+t",
        [
            kd(0, "ctrl"),
            kd(0.05, "shift"),
            kd(0.1, "T"),
            ku(0.15, "T"),
            ku(0.2, "shift"),
            ku(0.2, "ctrl"),
        ],
        [("hotkey", None, None, None, None, None, ("ctrl", "shift", "t"), None, None, 1)],
    ),
    (
        "modifier order does not matter",
        [kd(0, "shift_r"), kd(0.05, "ctrl_r"), kd(0.1, "t"), ku(0.15, "t")],
        [("hotkey", None, None, None, None, None, ("ctrl", "shift", "t"), None, None, 1)],
    ),
    (
        "shift+tab is a hotkey",
        [kd(0, "shift"), kd(0.05, "tab"), ku(0.1, "tab"), ku(0.2, "shift")],
        [("hotkey", None, None, None, None, None, ("shift", "tab"), None, None, 1)],
    ),
    (
        "lone special keys",
        [
            kd(0, "enter"),
            ku(0.05, "enter"),
            kd(0.3, "esc"),
            ku(0.35, "esc"),
            kd(0.6, "page_down"),
            ku(0.65, "page_down"),
        ],
        [
            ("key", None, None, None, None, None, ("enter",), None, None, 1),
            ("key", None, None, None, None, None, ("esc",), None, None, 1),
            ("key", None, None, None, None, None, ("pagedown",), None, None, 1),
        ],
    ),
    (
        "auto-repeat folds into one action",
        [kd(0, "backspace")]
        + [kd(0.5 + 0.03 * i, "backspace", repeat=True) for i in range(5)]
        + [ku(0.7, "backspace")],
        [("key", None, None, None, None, None, ("backspace",), None, None, 6)],
    ),
    (
        "two separate presses stay two actions",
        [kd(0, "down"), ku(0.05, "down"), kd(0.1, "down"), ku(0.15, "down")],
        [("key", None, None, None, None, None, ("down",), None, None, 1)] * 2,
    ),
    (
        "a lone modifier press is no action",
        [kd(0, "ctrl"), ku(0.1, "ctrl"), kd(0.2, "alt"), ku(0.3, "alt")],
        [],
    ),
    (
        "the super key alone opens the launcher",
        [kd(0, "cmd"), ku(0.1, "cmd")],
        [("key", None, None, None, None, None, ("win",), None, None, 1)],
    ),
    (
        "extra mouse buttons are browser keys",
        [down(0, 5, 5, "x1"), up(0.05, 5, 5, "x1")],
        [("key", None, None, None, None, None, ("browserback",), None, None, 1)],
    ),
    (
        "click then typing keeps order",
        [down(0, 10, 10), up(0.05, 10, 10), typed(0.1, "x", 0.15)],
        [
            ("click", 10, 10, None, None, None, (), None, None, 1),
            ("type", None, None, None, None, "x", (), None, None, 1),
        ],
    ),
]


@pytest.mark.parametrize(("name", "events", "expected"), CASES, ids=[c[0] for c in CASES])
def test_reduce(name: str, events: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    actions, issues = reduce_events(ev(events))
    assert [summary(a) for a in actions] == expected
    assert issues == []


def test_every_action_keeps_its_source_events() -> None:
    events = ev([down(0, 50, 50), up(0.05, 50, 50), down(0.2, 50, 50), up(0.25, 50, 50)])
    (a,) = reduce_events(events)[0]
    assert a.sources == ("b:0", "b:1", "b:2", "b:3")


BAD: list[tuple[str, list[tuple[Any, ...]], list[str], int]] = [
    ("release without press", [up(0, 1, 1)], ["release_without_press"], 0),
    ("press without release at the end", [down(0, 1, 1)], ["press_without_release"], 0),
    (
        "gap between press and release",
        [down(0, 1, 1), (0.1, "gap", {"t_end": 60.0}), up(61, 1, 1)],
        ["press_without_release", "release_without_press"],
        0,
    ),
    (
        "clock steps back",
        [kd(10, "enter"), ku(10.1, "enter"), kd(3, "tab"), ku(3.1, "tab")],
        ["clock_backwards"],
        2,
    ),
    ("modifier released that never went down", [ku(0, "ctrl")], ["release_without_press"], 0),
    ("key without a name", [(0, "key.down", {})], ["no_key"], 0),
]


@pytest.mark.parametrize(("name", "events", "codes", "n"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_reported_not_guessed(
    name: str, events: list[tuple[Any, ...]], codes: list[str], n: int
) -> None:
    actions, issues = reduce_events(ev(events))
    assert [i.code for i in issues] == codes
    assert len(actions) == n


def test_a_click_may_span_two_feeds() -> None:
    r = Reducer()
    assert r.feed_all(ev([down(0, 3, 4)])) == []
    out = r.feed_all([Event(0.05, "pointer.up", {"x": 3, "y": 4, "button": "left"}, "c:0")])
    out += r.flush()
    assert [summary(a) for a in out] == [("click", 3, 4, None, None, None, (), None, None, 1)]


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (Action("click", 0, x=10, y=20), "pyautogui.click(x=10, y=20)"),
        (Action("double_click", 0, x=1, y=2), "pyautogui.doubleClick(x=1, y=2)"),
        (Action("triple_click", 0, x=1, y=2), "pyautogui.tripleClick(x=1, y=2)"),
        (Action("right_click", 0, x=1, y=2), "pyautogui.rightClick(x=1, y=2)"),
        (Action("middle_click", 0, x=1, y=2), "pyautogui.middleClick(x=1, y=2)"),
        (
            Action("click", 0, x=1, y=2, keys=("shift",)),
            "pyautogui.keyDown('shift'); pyautogui.click(x=1, y=2); pyautogui.keyUp('shift')",
        ),
        (
            Action("drag", 0, x=1, y=2, to_x=30, to_y=40, button="left"),
            "pyautogui.moveTo(x=1, y=2); pyautogui.dragTo(x=30, y=40, button='left')",
        ),
        (Action("scroll", 0, x=5, y=6, dx=0, dy=3), "pyautogui.scroll(-3, x=5, y=6)"),
        (Action("scroll", 0, x=5, y=6, dx=0, dy=-2), "pyautogui.scroll(2, x=5, y=6)"),
        (Action("scroll", 0, x=5, y=6, dx=2, dy=0), "pyautogui.hscroll(2, x=5, y=6)"),
        (Action("type", 0, text="hi"), "pyautogui.write('hi')"),
        (Action("type", 0, text="it's\n"), 'pyautogui.write("it\'s\\n")'),
        (Action("key", 0, keys=("enter",)), "pyautogui.press('enter')"),
        (
            Action("key", 0, keys=("backspace",), presses=4),
            "pyautogui.press('backspace', presses=4)",
        ),
        (
            Action("hotkey", 0, keys=("ctrl", "shift", "t")),
            "pyautogui.hotkey('ctrl', 'shift', 't')",
        ),
    ],
)
def test_action_code(action: Action, code: str) -> None:
    assert action.action_code == code


# --- properties -------------------------------------------------------------------------------

pointer_event = st.tuples(
    st.sampled_from(["pointer.down", "pointer.up", "pointer.move", "pointer.scroll"]),
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from(["left", "right", "middle"]),
    st.integers(-2, 2),
)
key_event = st.tuples(
    st.sampled_from(["key.down", "key.up"]),
    st.sampled_from(["ctrl", "shift", "enter", "tab", "a", "backspace"]),
    st.booleans(),
)
text_event = st.text(min_size=1, max_size=5)


@st.composite
def event_streams(draw: st.DrawFn) -> list[Event]:
    out: list[Event] = []
    t = 0.0
    for i, item in enumerate(draw(st.lists(st.one_of(pointer_event, key_event, text_event)))):
        t += draw(st.floats(0.0, 1.0))
        if isinstance(item, str):
            out.append(Event(t, "text.typed", {"text": item, "t_end": t}, f"b:{i}"))
        elif item[0].startswith("pointer"):
            kind, x, y, b, d = item
            data: dict[str, Any] = {"x": x, "y": y}
            if kind == "pointer.scroll":
                data.update(dx=0, dy=d)
            elif kind != "pointer.move":
                data["button"] = b
            out.append(Event(t, kind, data, f"b:{i}"))
        else:
            kind, key, repeat = item
            kdata: dict[str, Any] = {"key": key}
            if kind == "key.down":
                kdata["repeat"] = repeat
            out.append(Event(t, kind, kdata, f"b:{i}"))
    return out


@settings(max_examples=200, deadline=None)
@given(event_streams())
def test_property_every_event_used_at_most_once_and_actions_in_time_order(
    events: list[Event],
) -> None:
    actions, _ = reduce_events(events)
    used = [s for a in actions for s in a.sources]
    assert len(used) == len(set(used))
    assert set(used) <= {e.eid for e in events}
    assert all(a.action_type for a in actions)


@settings(max_examples=200, deadline=None)
@given(event_streams(), st.integers(0, 50))
def test_property_splitting_the_input_changes_nothing(events: list[Event], cut: int) -> None:
    whole, _ = reduce_events(events)
    r = Reducer()
    parts = r.feed_all(events[:cut]) + r.feed_all(events[cut:]) + r.flush()
    assert parts == whole


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_property_typed_text_is_kept_exactly(text: str) -> None:
    actions, _ = reduce_events([Event(0, "text.typed", {"text": text, "t_end": 1.0}, "b:0")])
    assert [(a.action_type, a.text) for a in actions] == [("type", text)]
