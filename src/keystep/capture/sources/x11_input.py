"""Pointer and keyboard on X11: pynput's RECORD listeners, and a pointer sampler.

pynput's public callbacks drop the hardware keycode, which is what pairs a press with its
release when shift changes the character in between; so the keyboard listener overrides the
one internal hook (``_handle_message``) that sees the raw X event.

Pointer motion does not go through RECORD: every motion event (50-1000 a second, by mouse)
would be parsed in Python only for most of them to be dropped by the manifest's rate, and
that alone costs more than the rest of the agent (bench/agent_overhead.py). The mouse
listener records buttons only (its ``_EVENTS`` narrowed), and the caller asks where the
pointer is at the manifest's rate (:meth:`X11InputSource.sample_pointer`), on the thread and
at the wake-ups it has anyway: on a virtual machine a thread's wake-up costs ~100 us of CPU,
more than the question itself. It asks through libxcb (ctypes) when it can: python-xlib
builds and parses each request in Python, which costs about twice the CPU per sample.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time
from abc import ABC, abstractmethod
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
from keystep.capture.sources.x11_window import display_lost

# A key's name, the character it types, and its unshifted character (see RawInput).
_Meaning = tuple[str | None, str | None, str | None]

_BUTTONS = {"left": "left", "right": "right", "middle": "middle", "button8": "x1", "button9": "x2"}


def _printable(ch: str | None) -> bool:
    return ch is not None and len(ch) == 1 and ch.isprintable()


class X11InputSource(InputSource):
    """RECORD-based listeners for one display (pynput reads ``DISPLAY``, so it is set here).

    ``pointer``: follow the pointer, through :meth:`sample_pointer` on its own connection
    (False: no moves at all).
    """

    def __init__(self, display: str, *, pointer: bool = False) -> None:
        self._display = display
        self._follow_pointer = pointer
        self._listeners: list[Any] = []
        self._pointer: _Pointer | None = None
        self._asked: float | None = None  # when the question now pending was sent
        self._last_pos: tuple[int, int] | None = None
        self._lost = False  # a listener's X connection broke while running
        self._running = False

    def start(self, sink: InputSink) -> None:
        self._lost, self._running = False, True
        os.environ["DISPLAY"] = self._display
        try:
            import Xlib.X
            import Xlib.XK
            from pynput.keyboard import Key, KeyCode
            from pynput.keyboard._xorg import Listener as KeyboardListener
            from pynput.mouse._xorg import Listener as MouseListener
        except Exception as exc:  # pynput probes the display while importing
            raise SourceError(f"cannot listen to input on display {self._display}: {exc}") from exc

        # (name, char, base) by (keycode, modifier state); None: a keycode pynput cannot map.
        # pynput reads the keymap once per listener, so a key means the same all along and
        # is worked out once rather than at every press and release.
        meanings: dict[tuple[int, int], _Meaning | None] = {}

        def meaning(display: Any, event: Any, to_key: Any) -> _Meaning | None:
            try:
                key = to_key(display, event)
            except IndexError:
                return None
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
            return name, char, base

        source = self

        class _Guarded:
            """A listener whose thread ends quietly when its X connection breaks (the display
            went away), and says so through :meth:`X11InputSource.failure`."""

            def run(self) -> None:
                try:
                    super().run()  # type: ignore[misc]
                except Exception:
                    source._lost = source._running

        class _Keyboard(_Guarded, KeyboardListener):  # type: ignore[misc,valid-type]
            def _handle_message(self, display: Any, event: Any, injected: bool) -> None:
                t = time.time()
                code = int(event.detail)
                k = (code, int(event.state))
                try:
                    found = meanings[k]
                except KeyError:
                    found = meanings[k] = meaning(display, event, self._event_to_key)
                if found is None:
                    return
                name, char, base = found
                kind = KEY_PRESS if event.type == Xlib.X.KeyPress else KEY_RELEASE
                sink(
                    RawInput(
                        t,
                        kind,
                        keycode=code,
                        name=name,
                        char=char,
                        base=base,
                        server_ms=int(event.time),
                    )
                )

        class _Buttons(_Guarded, MouseListener):  # type: ignore[misc,valid-type]
            # pynput passes these as RECORD's device-event range (first, last); its default
            # (ButtonPressMask, ButtonReleaseMask) = (4, 8) spans MotionNotify, Enter, Leave.
            _EVENTS = (Xlib.X.ButtonPress, Xlib.X.ButtonRelease)
            server_ms: int | None = None  # of the event being handled, for the callbacks

            def _handle_message(self, display: Any, event: Any, injected: bool) -> None:
                self.server_ms = int(event.time)
                super()._handle_message(display, event, injected)

        def on_click(x: int, y: int, button: Any, pressed: bool, *_: Any) -> None:
            name = _BUTTONS.get(getattr(button, "name", ""), "")
            if name:
                kind = BUTTON_DOWN if pressed else BUTTON_UP
                sink(
                    RawInput(
                        time.time(),
                        kind,
                        x=int(x),
                        y=int(y),
                        button=name,
                        server_ms=mouse.server_ms,
                    )
                )

        def on_scroll(x: int, y: int, dx: int, dy: int, *_: Any) -> None:
            # pynput: +dy is up; keystep: +dy is down.
            sink(
                RawInput(
                    time.time(),
                    SCROLL,
                    x=int(x),
                    y=int(y),
                    dx=int(dx),
                    dy=-int(dy),
                    server_ms=mouse.server_ms,
                )
            )

        mouse = _Buttons(on_click=on_click, on_scroll=on_scroll)
        keyboard = _Keyboard()
        mouse.name, keyboard.name = "keystep-buttons", "keystep-keys"
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
        if self._follow_pointer:
            try:
                self._pointer = _open_pointer(self._display)
            except Exception as exc:
                self.stop()
                raise SourceError(f"cannot follow the pointer on {self._display}: {exc}") from exc
            self._asked = None
            self._last_pos = None

    def sample_pointer(self) -> RawInput | None:
        # Pipelined: each call collects the answer to the question asked at the previous one
        # (the server answered long before) and asks the next, so a sample never waits for
        # the server. A position is stamped with the time it was asked for, when the server
        # read it; the caller drops a sample older than an input it already handled (the
        # input carries its own position).
        pointer = self._pointer
        if pointer is None:
            return None
        try:
            asked = self._asked
            pos = pointer.answer() if asked is not None else None
            pointer.ask()
            self._asked = time.time()
        except Exception as exc:
            self._lost = self._running
            raise display_lost(self._display) from exc
        if asked is None or pos is None:
            return None  # the first question is only asked
        last, self._last_pos = self._last_pos, pos
        if last is None or pos == last:
            return None
        return RawInput(asked, MOVE, x=pos[0], y=pos[1])

    def failure(self) -> str | None:
        if self._lost:
            return str(display_lost(self._display))
        if self._running and not all(listener.is_alive() for listener in self._listeners):
            # Not claiming to record what is no longer seen, whatever ended the thread.
            return f"the input listener on {self._display} stopped"
        return None

    def stop(self) -> None:
        self._running = False
        if self._pointer is not None:
            pointer, self._pointer = self._pointer, None
            with contextlib.suppress(Exception):  # a connection the server already closed
                pointer.close()
        for listener in self._listeners:
            with contextlib.suppress(Exception):  # its connection may be broken already
                listener.stop()
        # pynput's RECORD thread may only notice the stop at the next X event; its threads
        # are daemons and the caller ignores anything delivered after stop, so don't wait long.
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                listener.join(timeout=0.2)
        self._listeners = []


class _Pointer(ABC):
    """Where the pointer is on the root window, over one X connection of its own: ``ask``
    sends the question, ``answer`` collects what the server found when it read it."""

    @abstractmethod
    def ask(self) -> None: ...

    @abstractmethod
    def answer(self) -> tuple[int, int]: ...

    @abstractmethod
    def close(self) -> None: ...


def _open_pointer(display: str) -> _Pointer:
    try:
        return _XcbPointer(display)
    except _NoXcb:
        return _XlibPointer(display)


class _XlibPointer(_Pointer):
    def __init__(self, display: str) -> None:
        import Xlib.display

        self._d = Xlib.display.Display(display)
        self._root = self._d.screen().root
        self._pos = (0, 0)

    def ask(self) -> None:
        # python-xlib has no pipelining: the round trip happens here, at the asking time.
        p = self._root.query_pointer()
        self._pos = int(p.root_x), int(p.root_y)

    def answer(self) -> tuple[int, int]:
        return self._pos

    def close(self) -> None:
        self._d.close()


class _NoXcb(Exception):
    """libxcb cannot be loaded."""


class _Cookie(ctypes.Structure):
    _fields_ = [("sequence", ctypes.c_uint)]


class _ScreenIterator(ctypes.Structure):
    # xcb_screen_t begins with its root window's id.
    _fields_ = [
        ("data", ctypes.POINTER(ctypes.c_uint32)),
        ("rem", ctypes.c_int),
        ("index", ctypes.c_int),
    ]


class _QueryPointerReply(ctypes.Structure):
    _fields_ = [
        ("response_type", ctypes.c_uint8),
        ("same_screen", ctypes.c_uint8),
        ("sequence", ctypes.c_uint16),
        ("length", ctypes.c_uint32),
        ("root", ctypes.c_uint32),
        ("child", ctypes.c_uint32),
        ("root_x", ctypes.c_int16),
        ("root_y", ctypes.c_int16),
        ("win_x", ctypes.c_int16),
        ("win_y", ctypes.c_int16),
        ("mask", ctypes.c_uint16),
        ("pad", ctypes.c_uint8 * 2),
    ]


class _XcbPointer(_Pointer):
    """QueryPointer through libxcb (ctypes), which mss already needs: a few C calls per
    sample with the GIL released while waiting. Not libX11's XQueryPointer: libX11 ends the
    process when a connection breaks unless a process-wide handler is replaced; xcb just
    returns no reply, and ``answer`` raises, as python-xlib would."""

    def __init__(self, display: str) -> None:
        name = ctypes.util.find_library("xcb")
        try:
            xcb = ctypes.CDLL(name or "libxcb.so.1")
            libc = ctypes.CDLL(None)
        except OSError as exc:
            raise _NoXcb from exc
        xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        xcb.xcb_connect.restype = ctypes.c_void_p
        xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
        xcb.xcb_connection_has_error.restype = ctypes.c_int
        xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
        xcb.xcb_disconnect.restype = None
        xcb.xcb_get_setup.argtypes = [ctypes.c_void_p]
        xcb.xcb_get_setup.restype = ctypes.c_void_p
        xcb.xcb_setup_roots_iterator.argtypes = [ctypes.c_void_p]
        xcb.xcb_setup_roots_iterator.restype = _ScreenIterator
        xcb.xcb_screen_next.argtypes = [ctypes.POINTER(_ScreenIterator)]
        xcb.xcb_screen_next.restype = None
        xcb.xcb_query_pointer.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        xcb.xcb_query_pointer.restype = _Cookie
        xcb.xcb_flush.argtypes = [ctypes.c_void_p]
        xcb.xcb_flush.restype = ctypes.c_int
        xcb.xcb_query_pointer_reply.argtypes = [ctypes.c_void_p, _Cookie, ctypes.c_void_p]
        xcb.xcb_query_pointer_reply.restype = ctypes.POINTER(_QueryPointerReply)
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free.restype = None
        screen = ctypes.c_int()
        conn = xcb.xcb_connect(display.encode(), ctypes.byref(screen))
        if xcb.xcb_connection_has_error(conn):
            xcb.xcb_disconnect(conn)
            raise SourceError(f"cannot open X display {display}")
        it = xcb.xcb_setup_roots_iterator(xcb.xcb_get_setup(conn))
        for _ in range(screen.value):
            xcb.xcb_screen_next(ctypes.byref(it))
        self._xcb, self._free, self._conn = xcb, libc.free, conn
        self._root = int(it.data[0])
        self._cookie = _Cookie()

    def ask(self) -> None:
        self._cookie = self._xcb.xcb_query_pointer(self._conn, self._root)
        self._xcb.xcb_flush(self._conn)

    def answer(self) -> tuple[int, int]:
        reply = self._xcb.xcb_query_pointer_reply(self._conn, self._cookie, None)
        if not reply:
            raise SourceError("the X connection was lost")
        try:
            r = reply.contents
            return int(r.root_x), int(r.root_y)
        finally:
            self._free(reply)

    def close(self) -> None:
        if self._conn:
            self._xcb.xcb_disconnect(self._conn)
            self._conn = None
