"""The X11 sources' cheap paths: screen grabs on DAMAGE only, focus and title as events,
the pointer sampled at the manifest's rate — each still sees every change that matters."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import pytest
from xsession import tkapp, xdo, xvfb

from keystep.capture.ring import FrameRing
from keystep.capture.sources.base import (
    BUTTON_DOWN,
    KEY_PRESS,
    MOVE,
    DisplayLost,
    Grab,
    RawInput,
    WindowInfo,
)
from keystep.capture.sources.x11_input import X11InputSource, _XcbPointer
from keystep.capture.sources.x11_screen import X11ScreenSource
from keystep.capture.sources.x11_window import X11WindowSource

pytestmark = [pytest.mark.x11]


def test_screen_changes_come_from_damage(tmp_path: Path) -> None:
    with xvfb(":64", wm=True) as d, tkapp(d, tmp_path / "a.json") as (w, _):
        src = X11ScreenSource(d)
        try:
            assert src.change_driven
            assert src.wait_change(0.5)  # the first call always grabs
            src.grab()
            time.sleep(0.3)
            assert not src.wait_change(0.5)  # a still screen: nothing to grab
            xdo(d, "mousemove", "--window", w, "300", "300")
            assert not src.wait_change(0.5)  # the cursor is not part of a grab
            xdo(d, "mousemove", "--window", w, "100", "45", "click", "1")  # recolours a button
            assert src.wait_change(2.0)
            grab = src.grab()
            assert (grab.w, grab.h) == (1280, 800) and len(grab.bgra) == 1280 * 800 * 4
            # Another thread can end a wait at once (the ring's clear and stop do).
            threading.Timer(0.2, src.wake).start()
            t0 = time.monotonic()
            assert not src.wait_change(5.0)
            assert time.monotonic() - t0 < 2.0
        finally:
            src.close()


def _grab(t: float) -> Grab:
    return Grab(t, 0, 0, 1, 1, bytearray(4))


def test_ring_trim_keeps_the_last_grab_before_the_watermark() -> None:
    ring = FrameRing(lambda: X11ScreenSource(":64"), rate_hz=4, seconds=2)
    for t in (1.0, 2.0, 3.0, 4.0):
        ring.push(_grab(t))
    ring.trim(3.5)
    assert len(ring) == 2
    got = ring.before(3.6)
    assert got is not None and got.t == 3.0
    assert ring.before(2.5) is None  # trimmed: too old to be asked for
    ring.trim(100.0)
    assert len(ring) == 1  # a still screen's only grab stays, however old
    ring.clear()
    assert len(ring) == 0


def test_ring_grabs_again_after_clear_on_a_still_screen(tmp_path: Path) -> None:
    with xvfb(":64", wm=True) as d:
        ring = FrameRing(lambda: X11ScreenSource(d), rate_hz=4)
        ring.start()
        try:
            deadline = time.monotonic() + 5
            while ring.grabs < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            assert ring.grabs == 1  # nothing drawn: no more grabs
            ring.clear()
            deadline = time.monotonic() + 2
            while len(ring) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(ring) == 1
        finally:
            t0 = time.monotonic()
            ring.stop()
        assert time.monotonic() - t0 < 1.0  # woken, not waiting out its timeout


def test_focus_and_title_changes_are_reported(tmp_path: Path) -> None:
    with (
        xvfb(":64", wm=True) as d,
        tkapp(d, tmp_path / "a.json") as (w1, _),
        tkapp(d, tmp_path / "b.json", title="other app", geometry="400x300+700+60") as (w2, _),
    ):
        src = X11WindowSource(d)
        try:
            xdo(d, "windowactivate", "--sync", w1)
            src.changed()
            assert src.focused() == int(w1)
            time.sleep(0.2)
            src.focused()  # a round trip brings in anything pending
            src.changed()
            assert not src.changed()  # nothing happened: nothing to ask the server
            xdo(d, "set_window", "--name", "renamed window", w1)
            src.focused()
            assert src.changed()
            info = src.describe(int(w1))
            assert info is not None and info.title == "renamed window"
            xdo(d, "windowactivate", "--sync", w2)
            src.focused()
            assert src.changed()
            assert src.focused() == int(w2)
        finally:
            src.close()


def test_inputs_and_focus_changes_carry_the_same_server_clock(tmp_path: Path) -> None:
    """What the recorder's ordering rests on: the window manager's focus change that a click
    causes is stamped at or after the click; keys typed afterwards are stamped after it."""
    with (
        xvfb(":64", wm=True) as d,
        tkapp(d, tmp_path / "a.json") as (w1, _),
        tkapp(d, tmp_path / "b.json", title="other app", geometry="400x300+700+60") as (w2, _),
    ):
        xdo(d, "windowactivate", "--sync", w1)
        windows = X11WindowSource(d)
        got: queue.SimpleQueue[RawInput] = queue.SimpleQueue()
        inputs = X11InputSource(d)
        inputs.start(got.put)
        try:
            windows.changed()
            windows.take_focus_changes()
            xdo(d, "mousemove", "900", "200", "click", "1")  # into the other app
            time.sleep(0.5)
            xdo(d, "type", "--delay", "40", "ab")
            time.sleep(0.5)
            assert windows.focused() == int(w2)
            windows.changed()
            changes = windows.take_focus_changes()
            assert windows.take_focus_changes() == []  # taken once
        finally:
            inputs.stop()
            xdo(d, "key", "shift", "click", "1")
            time.sleep(0.5)
            windows.close()
    received = []
    while not got.empty():
        received.append(got.get())
    click = next(r for r in received if r.kind == BUTTON_DOWN)
    keys = [r for r in received if r.kind == KEY_PRESS and r.char in ("a", "b")]
    assert changes and click.server_ms is not None and len(keys) == 2
    assert all(ms >= click.server_ms for ms in changes)
    assert all(k.server_ms is not None and k.server_ms > max(changes) for k in keys)


def test_pointer_samples_report_where_it_moved_and_where_it_stops() -> None:
    with xvfb(":64") as d:
        src = X11InputSource(d, pointer=True)
        src.start(lambda raw: None)
        moves = []
        try:
            assert src.sample_pointer() is None  # the first question is only asked
            assert src.sample_pointer() is None  # a first position: nothing moved yet
            for i in range(20):
                xdo(d, "mousemove", str(100 + 5 * i), "200")
                t_moved = time.time()
                time.sleep(0.02)
                raw = src.sample_pointer()  # the answer to the previous question...
                raw = src.sample_pointer() or raw  # ...and to one asked after the move
                assert raw is not None and raw.kind == MOVE
                # Stamped when the server was asked, which was after the move.
                assert raw.t >= t_moved - 0.001
                moves.append((raw.x, raw.y))
            assert src.sample_pointer() is None  # still: nothing to report
        finally:
            src.stop()
            # pynput's RECORD threads notice the stop at their next event: give them one
            # before the server goes away.
            xdo(d, "key", "shift", "click", "1")
            time.sleep(0.5)
    assert moves == [(100 + 5 * i, 200) for i in range(20)]


def test_a_key_means_what_its_modifiers_make_it() -> None:
    # What a key means is worked out once per keycode and modifier state, then remembered.
    with xvfb(":64") as d:
        got: queue.SimpleQueue[RawInput] = queue.SimpleQueue()
        src = X11InputSource(d)
        src.start(got.put)
        try:
            xdo(d, "type", "--delay", "50", "aAa")
            xdo(d, "key", "Return")
            time.sleep(0.5)
        finally:
            src.stop()
            xdo(d, "key", "shift", "click", "1")
            time.sleep(0.5)
    presses = []
    while not got.empty():
        raw = got.get()
        if raw.kind == KEY_PRESS and not (raw.name or "").startswith("shift"):
            presses.append(raw)
    assert [(p.char, p.base, p.name) for p in presses] == [
        ("a", "a", None),
        ("A", "a", None),
        ("a", "a", None),
        (None, "\r", "enter"),
    ]
    assert len({p.keycode for p in presses[:3]}) == 1


def test_a_lost_server_is_reported_by_the_pointer_sample_not_a_crash() -> None:
    # The pointer is asked through libxcb (ctypes): a broken connection must raise, not end
    # the process (as libX11 would).
    with xvfb(":64") as d:
        src = X11InputSource(d, pointer=True)
        src.start(lambda raw: None)
        assert isinstance(src._pointer, _XcbPointer)
        src.sample_pointer()
    time.sleep(0.3)
    try:
        with pytest.raises(DisplayLost, match="lost the X display"):
            for _ in range(3):
                src.sample_pointer()
        assert src.failure() is not None
    finally:
        src.stop()


def test_the_visible_window_list_is_cached_until_a_window_changes(tmp_path: Path) -> None:
    with (
        xvfb(":64", wm=True) as d,
        tkapp(d, tmp_path / "a.json") as (w1, _),
        tkapp(d, tmp_path / "b.json", title="other app", geometry="400x300+700+60") as (w2, _),
    ):
        src = X11WindowSource(d)

        def listed() -> dict[int, WindowInfo]:
            src.focused()  # the recorder's round trip before every kept frame
            return {w.handle: w for w in src.visible()}

        try:
            xdo(d, "windowactivate", "--sync", w1)
            time.sleep(0.3)
            first = listed()
            assert {int(w1), int(w2)} <= set(first)
            # Input inside a window changes no window: the same list, not asked again.
            xdo(d, "mousemove", "--window", w1, "100", "45", "click", "1")
            xdo(d, "key", "a")
            time.sleep(0.3)
            again = listed()
            assert all(again[h] is first[h] for h in first)

            xdo(d, "windowmove", "--sync", w2, "760", "120")
            time.sleep(0.2)
            moved = listed()[int(w2)].geometry
            assert moved is not None and moved[0] != first[int(w2)].geometry[0]  # type: ignore[index]

            xdo(d, "set_window", "--name", "renamed window", w2)
            time.sleep(0.2)
            assert listed()[int(w2)].title == "renamed window"

            xdo(d, "windowunmap", "--sync", w2)
            time.sleep(0.2)
            assert int(w2) not in listed()
        finally:
            src.close()
