"""The recording indicator: docked in a real XEmbed tray (trayer) while recording, and gone
while paused and after the recorder stops."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mss
import pytest
import Xlib.display
import Xlib.error
from xsession import keystep, make_home, start_recorder, stop, stop_recorder, tkapp, xdo, xvfb

from keystep.capture.indicator import NAME, NO_TRAY, SHOWN
from keystep.capture.recorder import STATUS_EVERY_S

pytestmark = [
    pytest.mark.x11,
    pytest.mark.skipif(shutil.which("trayer") is None, reason="needs trayer (apt-get install)"),
]


@contextmanager
def tray(display: str) -> Iterator[int]:
    """trayer, a small GTK system tray; yields the window that owns the tray selection."""
    proc = subprocess.Popen(
        ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request"],
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    d = Xlib.display.Display(display)
    try:
        sel = d.intern_atom("_NET_SYSTEM_TRAY_S0")
        deadline = time.monotonic() + 10
        while not d.get_selection_owner(sel):
            assert proc.poll() is None and time.monotonic() < deadline, "trayer did not start"
            time.sleep(0.05)
        yield int(d.get_selection_owner(sel).id)
    finally:
        d.close()
        stop(proc)


def icons(display: str) -> list[tuple[int, bool]]:
    """Every window named like the indicator: (id, whether it shows at a visible size inside
    the tray)."""
    d = Xlib.display.Display(display)
    found: list[tuple[int, bool]] = []

    def walk(w: Any, inside: bool) -> None:
        try:
            name = w.get_wm_name()
            cls = w.get_wm_class()
            geometry = w.get_geometry()
            viewable = w.get_attributes().map_state == Xlib.X.IsViewable
            viewable = viewable and min(geometry.width, geometry.height) >= 16
            children = w.query_tree().children
        except Xlib.error.XError:
            return
        inside = inside or (cls is not None and "trayer" in (cls[0] + cls[1]).lower())
        if name == NAME:
            found.append((int(w.id), inside and viewable))
        for c in children:
            walk(c, inside)

    try:
        walk(d.screen().root, False)
    finally:
        d.close()
    return found


def red_on_screen(display: str, wid: int) -> bool:
    """Whether the screen shows the indicator's red in the middle of window ``wid``."""
    d = Xlib.display.Display(display)
    try:
        w = d.create_resource_object("window", wid)
        g = w.get_geometry()
        pos = w.translate_coords(d.screen().root, 0, 0)
        x, y = -int(pos.x) + g.width // 2, -int(pos.y) + g.height // 2
    finally:
        d.close()
    with mss.MSS(display=display) as sct:
        shot = sct.grab({"left": x, "top": y, "width": 1, "height": 1})
    return tuple(shot.pixel(0, 0)) == (0xD0, 0x10, 0x10)


def wait_for(what: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


def test_the_icon_shows_while_recording_only(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    with xvfb(":58", wm=True) as d, tkapp(d, tmp_path / "app.json") as (w, _):
        xdo(d, "windowactivate", "--sync", w)
        rec = start_recorder(home, d)
        try:
            st = json.loads(keystep(home, "status", "--json").stdout)
            assert st["state"] == "recording" and st["indicator"] == NO_TRAY
            # A tray that starts after the recorder gets the icon (its MANAGER announcement).
            with tray(d):
                assert wait_for(lambda: [shown for _, shown in icons(d)] == [True]), icons(d)
                assert red_on_screen(d, icons(d)[0][0])
                time.sleep(STATUS_EVERY_S + 0.2)
                st = json.loads(keystep(home, "status", "--json").stdout)
                assert st["state"] == "recording" and st["indicator"] == SHOWN

                assert keystep(home, "pause").returncode == 0
                # Pause takes effect within 100 ms; the icon goes with the next tick.
                assert wait_for(lambda: icons(d) == [], timeout=1.0), icons(d)

                assert keystep(home, "resume").returncode == 0
                assert wait_for(lambda: [shown for _, shown in icons(d)] == [True]), icons(d)
                rc, _out, err = stop_recorder(rec)
                assert rc == 0, err
                assert icons(d) == []
        finally:
            if rec.poll() is None:
                stop_recorder(rec)
