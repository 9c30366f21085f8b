"""Pointer and keyboard on X11 through pynput's RECORD listeners.

pynput's public callbacks drop the hardware keycode, which is what pairs a press with its
release when shift changes the character in between; so the listeners below override the
one internal hook (``_handle_message``) that sees the raw X event, and otherwise use pynput
as it is.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

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

_BUTTONS = {"left": "left", "right": "right", "middle": "middle", "button8": "x1", "button9": "x2"}


def _printable(ch: str | None) -> bool:
    return ch is not None and len(ch) == 1 and ch.isprintable()


class X11InputSource(InputSource):
    """RECORD-based listeners for one display (pynput reads ``DISPLAY``, so it is set here)."""

    def __init__(self, display: str) -> None:
        self._display = display
        self._listeners: list[Any] = []

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

        def on_move(x: int, y: int, *_: Any) -> None:
            sink(RawInput(time.time(), MOVE, x=int(x), y=int(y)))

        def on_click(x: int, y: int, button: Any, pressed: bool, *_: Any) -> None:
            name = _BUTTONS.get(getattr(button, "name", ""), "")
            if name:
                kind = BUTTON_DOWN if pressed else BUTTON_UP
                sink(RawInput(time.time(), kind, x=int(x), y=int(y), button=name))

        def on_scroll(x: int, y: int, dx: int, dy: int, *_: Any) -> None:
            # pynput: +dy is up; keystep: +dy is down.
            sink(RawInput(time.time(), SCROLL, x=int(x), y=int(y), dx=int(dx), dy=-int(dy)))

        mouse = MouseListener(on_move=on_move, on_click=on_click, on_scroll=on_scroll)
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

    def stop(self) -> None:
        for listener in self._listeners:
            listener.stop()
        # pynput's RECORD thread may only notice the stop at the next X event; its threads
        # are daemons and the caller ignores anything delivered after stop, so don't wait long.
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                listener.join(timeout=0.2)
        self._listeners = []
