"""Screenshots of the X11 virtual screen with mss (XShm/XGetImage), kept in memory only.

The DAMAGE extension tells when anything on screen was drawn, so a still screen costs no
grabs at all; without DAMAGE the caller grabs at its fixed rate.
"""

from __future__ import annotations

import select
import time
from typing import Any

import mss

from keystep.capture.sources.base import Grab, ScreenSource, SourceError
from keystep.capture.wakeup import Wakeup


class X11ScreenSource(ScreenSource):
    """Grabs the whole virtual screen (``monitors[0]`` in mss: all monitors together)."""

    def __init__(self, display: str) -> None:
        try:
            self._mss: Any = mss.MSS(display=display)
        except Exception as exc:
            raise SourceError(f"cannot grab the screen of {display}: {exc}") from exc
        self._area = dict(self._mss.monitors[0])
        self._damage: _RootDamage | None = None
        try:
            self._damage = _RootDamage(display)
        except Exception:
            self._damage = None  # no DAMAGE: grab at the caller's rate

    @property
    def change_driven(self) -> bool:
        return self._damage is not None

    def wait_change(self, timeout: float) -> bool:
        if self._damage is None:
            return True
        return self._damage.wait(timeout)

    def wake(self) -> None:
        if self._damage is not None:
            self._damage.wake()

    def grab(self) -> Grab:
        shot = self._mss.grab(self._area)
        return Grab(
            t=time.time(),
            x=int(self._area["left"]),
            y=int(self._area["top"]),
            w=int(shot.width),
            h=int(shot.height),
            # mss already copied the shared-memory segment into this fresh bytearray;
            # ``shot.bgra`` would copy the 4 MB again.
            bgra=shot.raw,
        )

    def close(self) -> None:
        if self._damage is not None:
            self._damage.close()
        self._mss.close()


class _RootDamage:
    """A DAMAGE object on the root window (reports drawing in every window on screen)."""

    def __init__(self, display: str) -> None:
        import Xlib.display
        from Xlib.ext import damage

        d = Xlib.display.Display(display)
        try:
            if not d.has_extension("DAMAGE"):
                raise SourceError("no DAMAGE extension")
            d.damage_query_version()
            self._event = d.extension_event.DamageNotify
            self._obj = d.screen().root.damage_create(damage.DamageReportNonEmpty)
            d.sync()
        except Exception:
            d.close()
            raise
        self._d = d
        self._dirty = True  # the first call grabs at once
        # So that a wait ends at once on another thread's request.
        self._wakeup = Wakeup()

    def wait(self, timeout: float) -> bool:
        d = self._d
        deadline = time.monotonic() + timeout
        while True:
            while d.pending_events():
                if d.next_event().type == self._event:
                    self._dirty = True
            if self._dirty:
                self._dirty = False
                d.damage_subtract(self._obj)
                # A round trip: the server has emptied the damage region before the caller's
                # grab (on mss's own connection) is sent, so no drawing slips between them.
                d.sync()
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wakeup = self._wakeup.fileno()
            ready, _, _ = select.select([d.fileno(), wakeup], [], [], left)
            if wakeup in ready:
                self._wakeup.drain()
                if not d.pending_events():
                    return False

    def wake(self) -> None:
        self._wakeup.wake()

    def close(self) -> None:
        try:
            self._d.damage_destroy(self._obj)
            self._d.close()
        except Exception:
            pass
        self._wakeup.close()
