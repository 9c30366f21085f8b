"""Screenshots of the X11 virtual screen with mss (XShm/XGetImage), kept in memory only."""

from __future__ import annotations

import time
from typing import Any

import mss

from keystep.capture.sources.base import Grab, ScreenSource, SourceError


class X11ScreenSource(ScreenSource):
    """Grabs the whole virtual screen (``monitors[0]`` in mss: all monitors together)."""

    def __init__(self, display: str) -> None:
        try:
            self._mss: Any = mss.MSS(display=display)
        except Exception as exc:
            raise SourceError(f"cannot grab the screen of {display}: {exc}") from exc
        self._area = dict(self._mss.monitors[0])

    def grab(self) -> Grab:
        shot = self._mss.grab(self._area)
        return Grab(
            t=time.time(),
            x=int(self._area["left"]),
            y=int(self._area["top"]),
            w=int(shot.width),
            h=int(shot.height),
            bgra=bytes(shot.bgra),
        )

    def close(self) -> None:
        self._mss.close()
