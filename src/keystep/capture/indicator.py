"""A visible recording indicator: an XEmbed system-tray icon, shown only while recording.

The icon is docked (System Tray Protocol: a dock request to the owner of
``_NET_SYSTEM_TRAY_S<screen>``) while the recorder records, and destroyed when it pauses,
is blocked, has no consent, the focused window is excluded, or stops: an icon that stays up
while nothing is recorded would teach people to ignore it. A tray that starts later (its
MANAGER announcement on the root) or restarts gets the icon then. If no client owns the
selection there is no tray, nothing is shown, and ``keystep status`` says so.
"""

from __future__ import annotations

import select
import threading
from typing import Any, Final

import Xlib.display
import Xlib.error
import Xlib.protocol.event
import Xlib.X
import Xlib.Xutil

from keystep.capture.wakeup import Wakeup

SYSTEM_TRAY_REQUEST_DOCK: Final = 0
XEMBED_MAPPED: Final = 1
NAME: Final = "keystep recording"
SHOWN: Final = "tray icon (red square) while recording"
NO_TRAY: Final = "none: this desktop has no system tray"
_SIZE: Final = 22
_RED: Final = 0xD01010


class TrayIndicator:
    """``start`` opens its own X connection and thread; ``show(bool)`` from any thread.

    The thread sleeps in ``select`` on its X connection and a wake-up pipe, so it costs
    nothing between a tray's comings and goings and the recorder's changes of state.
    """

    def __init__(self, display: str) -> None:
        self._name = display
        self._stop = threading.Event()
        self._want = threading.Event()
        self._thread: threading.Thread | None = None
        self._wakeup: Wakeup | None = None
        self.status = "none: not started"

    def start(self) -> str:
        """Connect and look for a tray; returns what status should say."""
        try:
            d = Xlib.display.Display(self._name)
        except Exception:
            self.status = "none: cannot open the display"
            return self.status
        try:
            self._tray = _Tray(d)
        except Xlib.error.XError:
            d.close()
            self.status = "none: the tray did not answer"
            return self.status
        self._wakeup = Wakeup()
        self._thread = threading.Thread(
            target=self._run, args=(d, self._wakeup), daemon=True, name="keystep-indicator"
        )
        self.status = SHOWN if self._tray.owner is not None else NO_TRAY
        self._thread.start()
        return self.status

    def show(self, recording: bool) -> None:
        if recording == self._want.is_set():
            return
        if recording:
            self._want.set()
        else:
            self._want.clear()
        if self._wakeup is not None:
            self._wakeup.wake()

    def _run(self, d: Any, wakeup: Wakeup) -> None:
        tray = self._tray
        try:
            while not self._stop.is_set():
                if tray.events():
                    self.status = SHOWN if tray.owner is not None else NO_TRAY
                tray.sync(self._want.is_set())
                # Replies read while syncing can leave events queued in Xlib, not the socket.
                if d.pending_events():
                    continue
                ready, _, _ = select.select([d.fileno(), wakeup.fileno()], [], [])
                if wakeup.fileno() in ready:
                    wakeup.drain()
        except (Xlib.error.ConnectionClosedError, OSError):
            return
        finally:
            try:
                tray.sync(False)
                d.close()
            except Exception:
                pass

    def stop(self) -> None:
        self._want.clear()
        self._stop.set()
        if self._wakeup is not None:
            self._wakeup.wake()
        if self._thread is not None:
            self._thread.join(timeout=2)
            if self._thread.is_alive():
                return  # stuck in X: leave the pipe to it rather than close it under it
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None


class _Tray:
    """The tray owner and our icon in it; used by the indicator's thread only."""

    def __init__(self, d: Any) -> None:
        self._d = d
        self._screen = d.screen()
        self._selection = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
        self._manager = d.intern_atom("MANAGER")
        self._opcode = d.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
        self._xembed = d.intern_atom("_XEMBED_INFO")
        # The tray announces itself with a MANAGER client message to the root.
        self._screen.root.change_attributes(event_mask=Xlib.X.StructureNotifyMask)
        self.icon: Any = None
        self.owner: Any = None
        self._find_owner()

    def _find_owner(self) -> None:
        owner = self._d.get_selection_owner(self._selection)
        self.owner = owner if owner else None
        if self.owner is not None:
            # To hear when the tray goes away (DestroyNotify).
            self.owner.change_attributes(
                event_mask=Xlib.X.StructureNotifyMask,
                onerror=Xlib.error.CatchError(Xlib.error.BadWindow),
            )
        self._d.sync()

    def events(self) -> bool:
        """Take pending events; True when the tray came or went."""
        changed = False
        d = self._d
        while d.pending_events():
            ev = d.next_event()
            if ev.type == Xlib.X.ClientMessage and ev.client_type == self._manager:
                if ev.data[1][1] == self._selection:
                    self._forget_icon()
                    self._find_owner()
                    changed = True
            elif (
                ev.type == Xlib.X.DestroyNotify
                and self.owner is not None
                and int(ev.window.id) == int(self.owner.id)
            ):
                self.owner = None
                self._forget_icon()
                changed = True
        return changed

    def _forget_icon(self) -> None:
        """The old tray is gone: our icon went back to the root or with it; remove it."""
        if self.icon is not None:
            self.icon.destroy(onerror=Xlib.error.CatchError(Xlib.error.BadWindow))
            self.icon = None

    def sync(self, want: bool) -> None:
        if want and self.icon is None and self.owner is not None:
            self._dock()
        elif not want and self.icon is not None:
            self.icon.destroy(onerror=Xlib.error.CatchError(Xlib.error.BadWindow))
            self.icon = None
            self._d.flush()

    def _dock(self) -> None:
        s = self._screen
        win = s.root.create_window(
            0,
            0,
            _SIZE,
            _SIZE,
            0,
            s.root_depth,
            background_pixel=_RED,
            event_mask=Xlib.X.ExposureMask,
        )
        win.set_wm_name(NAME)
        win.set_wm_class("keystep", "Keystep")
        # Trays size the icon from its size hints; without them GTK trays give it 1 pixel.
        win.set_wm_normal_hints(
            flags=Xlib.Xutil.PMinSize | Xlib.Xutil.PBaseSize,
            min_width=_SIZE,
            min_height=_SIZE,
            base_width=_SIZE,
            base_height=_SIZE,
        )
        win.change_property(self._xembed, self._xembed, 32, [0, XEMBED_MAPPED])
        msg = Xlib.protocol.event.ClientMessage(
            window=self.owner,
            client_type=self._opcode,
            data=(32, [Xlib.X.CurrentTime, SYSTEM_TRAY_REQUEST_DOCK, win.id, 0, 0]),
        )
        self.owner.send_event(msg, event_mask=Xlib.X.NoEventMask)
        self._d.flush()
        self.icon = win
