"""A visible recording indicator: an XEmbed system-tray icon where the desktop has a tray.

If no client owns ``_NET_SYSTEM_TRAY_S0`` there is no tray, nothing is shown, and
``keystep status`` says so.
"""

from __future__ import annotations

import threading
from typing import Any

import Xlib.display
import Xlib.error
import Xlib.protocol.event
import Xlib.X

SYSTEM_TRAY_REQUEST_DOCK = 0
_SIZE = 22


class TrayIndicator:
    def __init__(self, display: str) -> None:
        self._name = display
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.shown = False

    def start(self) -> str:
        """Dock the icon if there is a tray; returns what status should say."""
        try:
            d = Xlib.display.Display(self._name)
        except Exception:
            return "none: cannot open the display"
        screen = d.screen()
        owner = d.get_selection_owner(d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}"))
        if not owner:
            d.close()
            return "none: this desktop has no system tray"
        win = screen.root.create_window(
            0,
            0,
            _SIZE,
            _SIZE,
            0,
            screen.root_depth,
            background_pixel=0xD01010,
            event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask,
        )
        win.set_wm_name("keystep recording")
        win.set_wm_class("keystep", "Keystep")
        xembed = d.intern_atom("_XEMBED_INFO")
        win.change_property(xembed, xembed, 32, [0, 1])  # version 0, XEMBED_MAPPED
        opcode = d.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
        msg = Xlib.protocol.event.ClientMessage(
            window=owner,
            client_type=opcode,
            data=(32, [Xlib.X.CurrentTime, SYSTEM_TRAY_REQUEST_DOCK, win.id, 0, 0]),
        )
        owner.send_event(msg, event_mask=Xlib.X.NoEventMask)
        d.flush()
        self.shown = True
        self._thread = threading.Thread(
            target=self._run, args=(d, win), daemon=True, name="keystep-indicator"
        )
        self._thread.start()
        return "tray icon (red square) while recording"

    def _run(self, d: Any, win: Any) -> None:
        try:
            while not self._stop.wait(0.2):
                while d.pending_events():
                    d.next_event()  # the background pixel paints it; events only drain
        except Xlib.error.ConnectionClosedError:
            return
        finally:
            try:
                win.destroy()
                d.close()
            except Exception:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
