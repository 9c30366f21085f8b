"""Observation alignment and episode splitting."""

from __future__ import annotations

from typing import Any

import pytest

from keystep.model.events import Event
from keystep.trajectory.align import Aligner, Step
from keystep.trajectory.episodes import EpisodeSplitter
from keystep.trajectory.reduce import Reducer


def run(spec: list[tuple[Any, ...]]) -> tuple[list[Step], Aligner]:
    events = [Event(t, k, dict(d), f"b:{i}") for i, (t, k, d) in enumerate(spec)]
    reducer, aligner = Reducer(), Aligner()
    steps: list[Step] = []
    for e in events:
        aligner.observe(e)
        steps += [aligner.align(a) for a in reducer.feed(e)]
    steps += [aligner.align(a) for a in reducer.flush()]
    return steps, aligner


def frame(t: float, n: int) -> tuple[Any, ...]:
    return (t, "screen.frame", {"frame": n, "rect": [0, 0, 64, 48], "w": 64, "h": 48})


def focus(t: float, app: str, title: str) -> tuple[Any, ...]:
    return (t, "window.focus", {"window": app, "app": app, "title": title})


def click(t: float, x: int = 5) -> list[tuple[Any, ...]]:
    return [
        (t, "pointer.down", {"x": x, "y": 5, "button": "left"}),
        (t + 0.05, "pointer.up", {"x": x, "y": 5, "button": "left"}),
    ]


def test_each_step_gets_the_frame_and_window_from_before_it() -> None:
    spec = [focus(0, "xterm", "shell"), frame(0.9, 0), *click(1.0)]
    spec += [frame(1.95, 1), focus(1.96, "gedit", "notes"), *click(2.0, x=40)]
    steps, aligner = run(spec)
    assert [(s.frame and s.frame.data["frame"], s.app, s.window_title) for s in steps] == [
        (0, "xterm", "shell"),
        (1, "gedit", "notes"),
    ]
    assert (steps[0].screen_w, steps[0].screen_h) == (64, 48)
    assert aligner.issues == []


def test_a_frame_taken_while_a_double_click_is_pending_belongs_to_the_next_action() -> None:
    # The second frame is recorded after the click started, so the click keeps frame 0.
    spec = [frame(0.9, 0), *click(1.0), frame(1.1, 1), (1.2, "key.down", {"key": "enter"})]
    steps, _ = run(spec)
    assert [s.frame.data["frame"] for s in steps if s.frame] == [0, 1]


def test_no_frame_is_reported_not_borrowed_from_after_the_action() -> None:
    steps, aligner = run([*click(1.0), frame(1.5, 0)])
    assert steps[0].frame is None
    assert [i.code for i in aligner.issues] == ["no_frame"]


def test_nothing_from_before_a_gap_describes_the_screen_after_it() -> None:
    spec = [frame(0.5, 0), focus(0.5, "a", "t"), (1, "gap", {"t_end": 50}), *click(51)]
    steps, _ = run(spec)
    assert (steps[0].frame, steps[0].app) == (None, None)


@pytest.mark.parametrize(
    ("times", "apps", "boundaries", "split_on_app", "expected"),
    [
        ([0, 1, 2], ["a", "a", "a"], {}, False, [0, 0, 0]),
        ([0, 1, 400], ["a", "a", "a"], {}, False, [0, 0, 1]),  # idle > 5 min
        ([0, 1, 2], ["a", "b", "b"], {}, False, [0, 0, 0]),
        ([0, 1, 2], ["a", "b", "b"], {}, True, [0, 1, 1]),
        ([0, 1, 2], ["a", "a", "a"], {2: "gap"}, False, [0, 0, 1]),
        ([0, 1, 2], ["a", "a", "a"], {1: "manifest"}, False, [0, 1, 1]),
        ([10, 11, 3], ["a", "a", "a"], {}, False, [0, 0, 1]),  # clock jumped back
    ],
)
def test_episode_splits(
    times: list[float],
    apps: list[str],
    boundaries: dict[int, str],
    split_on_app: bool,
    expected: list[int],
) -> None:
    from keystep.trajectory.actions import Action

    splitter = EpisodeSplitter(split_on_app=split_on_app)
    ids: list[str] = []
    indexes: list[int] = []
    for i, (t, app) in enumerate(zip(times, apps, strict=True)):
        if i in boundaries:
            splitter.boundary(boundaries[i])
        step = Step(Action("click", t, x=1, y=1, sources=(f"b:{i}",)), None, app, None, None, None)
        placed = splitter.place(step)
        ids.append(placed.episode_id)
        indexes.append(placed.index)
    numbering = {e: n for n, e in enumerate(dict.fromkeys(ids))}
    assert [numbering[e] for e in ids] == expected
    # step indexes restart at 0 in every episode
    assert indexes == [sum(1 for j in range(i) if ids[j] == ids[i]) for i in range(len(ids))]
