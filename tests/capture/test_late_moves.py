"""A pointer sample reaches the recorder one period after the server read it (its query is
pipelined): such a late sample must never land after an input handled since it was read,
nor inside a window of recording it did not belong to (a gap: pause, block, excluded app)."""

from __future__ import annotations

from pathlib import Path

from xsession import make_home

from keystep.capture.batcher import Batcher
from keystep.capture.recorder import Recorder
from keystep.capture.sources.base import BUTTON_DOWN, MOVE, RawInput
from keystep.model.manifest import default_manifest


def _recorder(tmp_path: Path) -> tuple[Recorder, list[RawInput]]:
    r = Recorder(make_home(tmp_path / "home"), display=":0")
    r.batcher = Batcher(default_manifest())
    handled: list[RawInput] = []
    r._handle = handled.append  # type: ignore[method-assign]
    return r, handled


def test_a_sample_read_before_a_handled_input_is_dropped(tmp_path: Path) -> None:
    r, handled = _recorder(tmp_path)
    r._q.put(RawInput(10.0, BUTTON_DOWN, x=1, y=1, button="left"))
    r._drain()
    r._moves.append(RawInput(9.98, MOVE, x=5, y=5))  # read before the click, arrived after it
    r._moves.append(RawInput(10.02, MOVE, x=6, y=6))
    r._take_moves(float("inf"))
    assert [(h.kind, h.t) for h in handled] == [(BUTTON_DOWN, 10.0), (MOVE, 10.02)]


def test_a_sample_read_inside_a_gap_is_not_recorded_after_it(tmp_path: Path) -> None:
    r, handled = _recorder(tmp_path)
    r._gap_start = 15.0  # a gap open since 15 s: e.g. focus in an excluded app
    r._close_gap(20.0)  # focus back in a recorded window
    r._moves.append(RawInput(19.99, MOVE, x=5, y=5))  # read in the excluded app, arrived after
    r._moves.append(RawInput(20.01, MOVE, x=6, y=6))
    r._take_moves(float("inf"))
    assert [(h.x, h.t) for h in handled] == [(6, 20.01)]
