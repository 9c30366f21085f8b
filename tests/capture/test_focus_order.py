"""Focus changes and inputs reach keystep on different X connections, and the recorder may
handle an input late (a busy machine). Whatever the delay, an input belongs to the window
that had focus when it was made: keys typed after a click into another window go to that
window; the click that moved focus stays with the window it was made in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xsession import make_home

from keystep.capture.batcher import Batcher
from keystep.capture.frames import FrameRate
from keystep.capture.gate import Gate
from keystep.capture.recorder import Recorder
from keystep.capture.sources.base import (
    BUTTON_DOWN,
    BUTTON_UP,
    KEY_PRESS,
    KEY_RELEASE,
    RawInput,
    WindowInfo,
    WindowSource,
)
from keystep.capture.typing import TypingAssembler
from keystep.model.events import POINTER_DOWN, TEXT_TYPED, WINDOW_FOCUS, Event
from keystep.model.manifest import default_manifest

ONE, TWO, VAULT = 11, 22, 33


class Windows(WindowSource):
    """Focus as the server tells it now, with the server times of the changes."""

    def __init__(self) -> None:
        self.handle = ONE
        self.changes: list[int] = []
        self.dirty = False

    def move_focus(self, handle: int, server_ms: int | None) -> None:
        self.handle, self.dirty = handle, True
        if server_ms is not None:
            self.changes.append(server_ms)

    def focused(self) -> int | None:
        return self.handle

    def changed(self) -> bool:
        dirty, self.dirty = self.dirty, False
        return dirty

    def take_focus_changes(self) -> list[int]:
        taken, self.changes = self.changes, []
        return taken

    def describe(self, handle: int) -> WindowInfo | None:
        title = {ONE: "app one", TWO: "app two", VAULT: "KeePassXC"}[handle]
        return WindowInfo(handle, "App", title, None, (0, 0, 100, 100))

    def visible(self) -> list[WindowInfo]:
        return []

    def close(self) -> None:
        pass


class _Plain:
    reads_frames = False

    def text(self, text: str, **_: Any) -> tuple[str, int]:
        return text, 0

    def title(self, title: str | None) -> tuple[str | None, int]:
        return title, 0


class _NoFields:
    def password_state(self, window: WindowInfo) -> bool | None:
        return None


class _NoTray:
    status = "none: test"

    def show(self, shown: bool) -> None:
        pass


class _NoGrabs:
    def before(self, t: float) -> None:
        return None

    def clear(self) -> None:
        pass

    def trim(self, t: float) -> None:
        pass


def _recorder(tmp_path: Path) -> tuple[Recorder, Windows]:
    home = make_home(tmp_path / "home")
    manifest = default_manifest()
    r = Recorder(home, display=":0")
    r.manifest = manifest
    r.gate = Gate(home, manifest)
    r.batcher = Batcher(manifest)
    r.typing = TypingAssembler()
    r.fields = _NoFields()
    r.frame_rate = FrameRate(manifest.max_fps)
    r.redaction = _Plain()  # type: ignore[assignment]
    r.ring = _NoGrabs()  # type: ignore[assignment]
    r.indicator = _NoTray()  # type: ignore[assignment]
    r._move_period = 1.0
    windows = Windows()
    r.windows = windows
    r.gate.refresh(time.time())
    r._observe(time.time() - 60)  # recording in app one since a minute ago
    return r, windows


def _key(t: float, ms: int, char: str, code: int, kind: str = KEY_PRESS) -> RawInput:
    return RawInput(t, kind, keycode=code, char=char, base=char, server_ms=ms)


def _in_order(r: Recorder) -> list[Event]:
    for ev in r.typing.flush():
        r._emit(ev)
    return sorted(r.batcher.events, key=lambda e: e.t)  # as the batch is sealed


def _window_of(events: list[Event], kind: str) -> str | None:
    """The title of the focus event before the first event of ``kind`` (as a step's)."""
    title = None
    for ev in events:
        if ev.kind == WINDOW_FOCUS:
            title = ev.data.get("title")
        elif ev.kind == kind:
            return title
    raise AssertionError(f"no {kind} event")


def test_keys_handled_late_go_to_the_window_focused_before_them(tmp_path: Path) -> None:
    r, windows = _recorder(tmp_path)
    t = time.time() - 2.0  # typed two seconds ago; the recorder is only now handling them
    windows.move_focus(TWO, server_ms=10_000)  # focus moved to app two before the keys
    for i, ch in enumerate("red"):
        r._handle(_key(t + 0.1 * i, 11_000 + 100 * i, ch, 30 + i))
        r._handle(_key(t + 0.1 * i + 0.05, 11_050 + 100 * i, ch, 30 + i, KEY_RELEASE))
    events = _in_order(r)
    typed = [e for e in events if e.kind == TEXT_TYPED]
    assert [e.data["text"] for e in typed] == ["red"]
    assert _window_of(events, TEXT_TYPED) == "app two"


def test_a_tick_with_inputs_waiting_does_not_stamp_a_focus_change_after_them(
    tmp_path: Path,
) -> None:
    r, windows = _recorder(tmp_path)
    t = time.time() - 1.0
    windows.move_focus(TWO, server_ms=10_000)
    r._q.put(_key(t, 11_000, "r", 30))  # made after the change, waiting in the queue
    r._tick(time.time())
    r._drain()
    assert _window_of(_in_order(r), TEXT_TYPED) == "app two"


def test_the_click_that_moves_focus_stays_with_the_window_it_was_made_in(
    tmp_path: Path,
) -> None:
    r, windows = _recorder(tmp_path)
    t = time.time() - 2.0
    # The window manager focused app two in reply to the click (same or later server time),
    # and had done so by the time the recorder looked.
    windows.move_focus(TWO, server_ms=20_000)
    r._handle(RawInput(t, BUTTON_DOWN, x=5, y=5, button="left", server_ms=20_000))
    r._handle(RawInput(t + 0.08, BUTTON_UP, x=5, y=5, button="left", server_ms=20_080))
    r._handle(_key(t + 1.0, 21_000, "r", 30))
    events = _in_order(r)
    assert _window_of(events, POINTER_DOWN) == "app one"
    assert _window_of(events, TEXT_TYPED) == "app two"


def test_without_server_times_the_input_still_keeps_its_place(tmp_path: Path) -> None:
    """Sources that give no server time: a change found at an input is stamped at it."""
    r, windows = _recorder(tmp_path)
    windows.move_focus(TWO, server_ms=None)
    r._handle(RawInput(time.time() - 2.0, KEY_PRESS, keycode=30, char="r", base="r"))
    assert _window_of(_in_order(r), TEXT_TYPED) == "app two"


def test_keys_made_in_a_window_focused_only_in_between_are_not_recorded(
    tmp_path: Path,
) -> None:
    """Focus went to a password manager and on to app two before the recorder looked: the
    key made in between went to a window no longer known, maybe an excluded one."""
    r, windows = _recorder(tmp_path)
    t = time.time() - 2.0
    windows.move_focus(VAULT, server_ms=10_000)
    windows.move_focus(TWO, server_ms=12_000)
    r._handle(_key(t, 11_000, "s", 30))  # typed into the password manager
    r._handle(_key(t + 0.05, 11_050, "s", 30, KEY_RELEASE))
    r._handle(_key(t + 1.5, 12_500, "r", 31))  # typed into app two
    events = _in_order(r)
    assert [e.data["text"] for e in events if e.kind == TEXT_TYPED] == ["r"]
    assert _window_of(events, TEXT_TYPED) == "app two"


def test_inputs_drained_at_stop_are_recorded_without_frames(tmp_path: Path) -> None:
    """A stop does not wait on redacting a backlog of frames (each up to its budget)."""
    r, _ = _recorder(tmp_path)

    class _OneGrab(_NoGrabs):
        def before(self, t: float) -> Any:
            return object()

    class _NoFrames(_Plain):
        reads_frames = True

        def frame(self, *_: Any, **__: Any) -> None:
            raise AssertionError("a frame was redacted after the stop")

    r.ring = _OneGrab()  # type: ignore[assignment]
    r.redaction = _NoFrames()  # type: ignore[assignment]
    r._stopping = True
    t = time.time() - 1.0
    r._q.put(RawInput(t, BUTTON_DOWN, x=5, y=5, button="left", server_ms=1))
    r._q.put(RawInput(t + 0.05, BUTTON_UP, x=5, y=5, button="left", server_ms=2))
    r._drain()
    assert [e.kind for e in _in_order(r) if e.kind == POINTER_DOWN] == [POINTER_DOWN]
