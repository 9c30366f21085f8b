"""Pointer and keyboard on X11: pynput's RECORD listeners, and a pointer sampler.

pynput's public callbacks drop the hardware keycode, which is what pairs a press with its
release when shift changes the character in between; so the keyboard listener overrides the
one internal hook (``_handle_message``) that sees the raw X event.

Pointer motion does not go through RECORD: every motion event (50-1000 a second, by mouse)
would be parsed in Python only for most of them to be dropped by the manifest's rate, and
that alone costs more than the rest of the agent (bench/agent_overhead.py). The mouse
listener records buttons only (its ``_EVENTS`` narrowed), and a sampler thread asks the
server where the pointer is at the manifest's rate, reporting a move when it changed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Final

from keystep.capture.sources.base import (
    BUTTON_DOWN,
    BUTTON_UP,
    KEY_PRESS,
    KEY_RELEASE,
    MOVE,
    SCROLL,
    InputSink,
    InputSource,
    RawInput,
    SourceError,
)

# After this long without motion the sampler slows down to IDLE_HZ (a still pointer costs
# little); the first move after a rest is then reported up to 1/IDLE_HZ s late.
IDLE_AFTER_S: Final = 1.0
IDLE_HZ: Final = 5.0

_BUTTONS = {"left": "left", "right": "right", "middle": "middle", "button8": "x1", "button9": "x2"}


def _printable(ch: str | None) -> bool:
    return ch is not None and len(ch) == 1 and ch.isprintable()


class X11InputSource(InputSource):
    """RECORD-based listeners for one display (pynput reads ``DISPLAY``, so it is set here).

    ``move_hz``: how often to sample the pointer position (None: no moves at all).
    """

    def __init__(self, display: str, *, move_hz: float | None = None) -> None:
        self._display = display
        self._move_hz = move_hz
        self._listeners: list[Any] = []
        self._sampler: _PointerSampler | None = None

    def start(self, sink: InputSink) -> None:
        os.environ["DISPLAY"] = self._display
        try:
            import Xlib.X
            import Xlib.XK
            from pynput.keyboard import Key, KeyCode
            from pynput.keyboard._xorg import Listener as KeyboardListener
            from pynput.mouse._xorg import Listener as MouseListener
        except Exception as exc:  # pynput probes the display while importing
            raise SourceError(f"cannot listen to input on display {self._display}: {exc}") from exc

        class _Keyboard(KeyboardListener):  # type: ignore[misc,valid-type]
            def _handle_message(self, display: Any, event: Any, injected: bool) -> None:
                t = time.time()
                try:
                    key = self._event_to_key(display, event)
                except IndexError:
                    return
                kind = KEY_PRESS if event.type == Xlib.X.KeyPress else KEY_RELEASE
                char: str | None = None
                name: str | None = None
                if key == Key.space:
                    char = " "
                elif isinstance(key, Key):
                    name = key.name
                elif isinstance(key, KeyCode) and _printable(key.char):
                    char = key.char
                else:
                    name = Xlib.XK.keysym_to_string(getattr(key, "vk", 0) or 0) or None
                    name = name or f"keycode_{event.detail}"
                base_sym = display.keycode_to_keysym(event.detail, 0)
                base = Xlib.XK.keysym_to_string(base_sym) if base_sym else None
                sink(RawInput(t, kind, keycode=int(event.detail), name=name, char=char, base=base))

        class _Buttons(MouseListener):  # type: ignore[misc,valid-type]
            # pynput passes these as RECORD's device-event range (first, last); its default
            # (ButtonPressMask, ButtonReleaseMask) = (4, 8) spans MotionNotify, Enter, Leave.
            _EVENTS = (Xlib.X.ButtonPress, Xlib.X.ButtonRelease)

        def on_click(x: int, y: int, button: Any, pressed: bool, *_: Any) -> None:
            name = _BUTTONS.get(getattr(button, "name", ""), "")
            if name:
                kind = BUTTON_DOWN if pressed else BUTTON_UP
                sink(RawInput(time.time(), kind, x=int(x), y=int(y), button=name))

        def on_scroll(x: int, y: int, dx: int, dy: int, *_: Any) -> None:
            # pynput: +dy is up; keystep: +dy is down.
            sink(RawInput(time.time(), SCROLL, x=int(x), y=int(y), dx=int(dx), dy=-int(dy)))

        mouse = _Buttons(on_click=on_click, on_scroll=on_scroll)
        keyboard = _Keyboard()
        self._listeners = [mouse, keyboard]
        for listener in self._listeners:
            listener.start()
        # pynput's wait() blocks forever when its thread dies before it is ready.
        deadline = time.monotonic() + 5
        for listener in self._listeners:
            while not getattr(listener, "_ready", False):
                if not listener.is_alive() or time.monotonic() > deadline:
                    self.stop()
                    raise SourceError(f"input listener did not start on {self._display}")
                time.sleep(0.01)
        if self._move_hz:
            try:
                self._sampler = _PointerSampler(self._display, self._move_hz, sink)
            except Exception as exc:
                self.stop()
                raise SourceError(f"cannot follow the pointer on {self._display}: {exc}") from exc
            self._sampler.start()

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        for listener in self._listeners:
            listener.stop()
        # pynput's RECORD thread may only notice the stop at the next X event; its threads
        # are daemons and the caller ignores anything delivered after stop, so don't wait long.
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                listener.join(timeout=0.2)
        self._listeners = []


class _PointerSampler:
    """Polls the pointer position on its own X connection and thread; reports changes."""

    def __init__(self, display: str, rate_hz: float, sink: InputSink) -> None:
        import Xlib.display

        self._d = Xlib.display.Display(display)
        self._root = self._d.screen().root
        self._period = 1.0 / rate_hz
        self._idle_period = max(self._period, 1.0 / IDLE_HZ)
        self._sink = sink
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keystep-pointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last: tuple[int, int] | None = None
        moved = 0.0
        try:
            while True:
                p = self._root.query_pointer()
                t = time.time()
                pos = (int(p.root_x), int(p.root_y))
                if pos != last:
                    if last is not None:
                        self._sink(RawInput(t, MOVE, x=pos[0], y=pos[1]))
                    last, moved = pos, t
                idle = t - moved >= IDLE_AFTER_S
                if self._stop.wait(self._idle_period if idle else self._period):
                    return
        except Exception:
            return  # the display went away; the listeners report that
        finally:
            with contextlib.suppress(Exception):
                self._d.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
