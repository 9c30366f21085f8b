"""Special keys and hotkeys get their own frame: the screen after the typing before them.

Run with the screen redactor on (whole RGB frames through OCR) and off (frames diffed and
converted from the raw grab); an excluded window on screen is black in every frame either way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from xsession import (
    events_of,
    keystep,
    make_home,
    start_recorder,
    stop_recorder,
    tkapp,
    unseal_all,
    xdo,
    xvfb,
)

from keystep.capture.frames import rebuild_frames
from keystep.capture.sources.x11_window import X11WindowSource
from keystep.model.manifest import default_manifest_text
from keystep.trajectory.align import Aligner
from keystep.trajectory.reduce import Reducer

pytestmark = [pytest.mark.x11]

TYPED = "fern tuesday mango"
ENTRY = (20, 100, 300, 30)  # tests/apps/tkapp.py, window-relative


def _ink_right_edge(img: Any, gx: int, gy: int) -> int:
    """How far right the entry's dark pixels (text and cursor) reach; -1 when none."""
    x, y, w, h = ENTRY
    region = img[gy + y + 3 : gy + y + h - 3, gx + x + 3 : gx + x + w - 3].astype(int)
    cols = np.flatnonzero((region.sum(axis=2) < 300).any(axis=0))
    return int(cols[-1]) if cols.size else -1


@pytest.mark.parametrize("screen_redaction", [True, False], ids=["redactor", "raw-diff"])
def test_a_key_or_hotkey_step_sees_the_text_typed_before_it(
    tmp_path: Path, screen_redaction: bool
) -> None:
    manifest = default_manifest_text()
    if not screen_redaction:
        assert "  screen: true\n" in manifest
        manifest = manifest.replace("  screen: true\n", "  screen: false\n")
    home = make_home(tmp_path / "home", manifest_yaml=manifest)
    r = keystep(home, "exclude", "--title", "^secret notes$", "--label", "notes")
    assert r.returncode == 0, r.stderr
    log = tmp_path / "app.json"
    with (
        xvfb(":57", wm=True) as d,
        tkapp(d, log) as (w, _p),
        tkapp(d, tmp_path / "b.json", title="secret notes", geometry="400x300+760+300") as (w2, _),
    ):
        xdo(d, "windowactivate", "--sync", w)
        windows = X11WindowSource(d)
        info = windows.describe(int(w2))
        windows.close()
        assert info is not None and info.geometry is not None and info.outer is not None
        # Title bar and borders included: they show the title that made the window excluded.
        sx, sy, sw, sh = info.outer
        assert sh > info.geometry[3]
        rec = start_recorder(home, d)
        assert rec.poll() is None, rec.stderr.read() if rec.stderr else ""
        try:
            xdo(d, "windowactivate", "--sync", w)
            time.sleep(0.6)
            xdo(d, "mousemove", "--window", w, "100", "115", "click", "1")
            time.sleep(0.6)
            xdo(d, "type", "--delay", "30", TYPED)
            # Longer than a grab period (ring at 4/s): the typed text is on screen and grabbed.
            time.sleep(0.7)
            xdo(d, "key", "BackSpace")
            time.sleep(0.7)
            xdo(d, "key", "Return")
            time.sleep(0.7)
            xdo(d, "key", "ctrl+a")
            time.sleep(0.5)
        finally:
            rc, _out, err = stop_recorder(rec)
        assert rc == 0, err
    assert json.loads(log.read_text())["entry"] == TYPED[:-1]

    batches = unseal_all(home)
    images: dict[str, Any] = {}
    for u in batches:
        rebuilt = rebuild_frames(u.content.events, u.content.frames)
        for e in u.content.events:
            if e.kind == "screen.frame":
                images[e.eid] = rebuilt[e.data["frame"]]
    events = events_of(batches)
    focus = next(e for e in events if e.kind == "window.focus" and e.data.get("geometry"))
    gx, gy = focus.data["geometry"][:2]

    # The steps a dataset is built from, with the frame the aligner gives each.
    reducer, aligner = Reducer(), Aligner()
    steps = []
    for e in events:
        aligner.observe(e)
        steps += [aligner.align(a) for a in reducer.feed(e)]
    steps += [aligner.align(a) for a in reducer.flush()]
    by_keys = {s.action.keys: s for s in steps if s.action.action_type in ("key", "hotkey")}
    assert set(by_keys) == {("backspace",), ("enter",), ("ctrl", "a")}
    typing = next(s for s in steps if s.action.action_type == "type")
    assert typing.action.text == TYPED

    # Each key step has a frame of its own, taken after the step before it began.
    frames = [by_keys[k].frame for k in (("backspace",), ("enter",), ("ctrl", "a"))]
    assert typing.frame is not None and all(f is not None for f in frames)
    eids = [typing.frame.eid, *(f.eid for f in frames if f is not None)]
    assert len(set(eids)) == 4, "a key step reused an earlier frame"

    # Before typing the entry is empty; before backspace it holds all of TYPED; before enter
    # (after backspace) one character less.
    empty = _ink_right_edge(images[typing.frame.eid], gx, gy)
    full = _ink_right_edge(images[eids[1]], gx, gy)
    shorter = _ink_right_edge(images[eids[2]], gx, gy)
    assert empty < 10, empty
    assert full > 100 and full - shorter >= 4, (full, shorter)

    # The excluded window, visible the whole time, is black in every kept frame.
    assert len(images) >= 5
    for img in images.values():
        lit = np.argwhere(img[sy : sy + sh, sx : sx + sw].any(axis=2))
        assert lit.size == 0, (info.outer, lit.min(axis=0), lit.max(axis=0))
