"""A small in-memory ring of recent screen grabs, so an action can get the screen before it.

Grabs are raw pixels in memory only; they are never written anywhere. The ring holds about
``seconds`` of history: enough for the pipeline to look up the last grab before an event
that it processes a little after the event happened.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Callable

from keystep.capture.sources.base import Grab, ScreenSource

DEFAULT_RATE_HZ = 4.0


class FrameRing:
    def __init__(
        self,
        open_source: Callable[[], ScreenSource],
        *,
        rate_hz: float = DEFAULT_RATE_HZ,
        seconds: float = 3.0,
    ) -> None:
        self._open_source = open_source
        self._period = 1.0 / rate_hz
        self._grabs: deque[Grab] = deque(maxlen=max(2, int(rate_hz * seconds)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keystep-screen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # The source is opened on this thread: X connections stay with one thread.
        try:
            source = self._open_source()
        except Exception as exc:
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        try:
            while not self._stop.is_set():
                try:
                    grab = source.grab()
                except Exception as exc:
                    self.error = type(exc).__name__
                else:
                    self.push(grab)
                self._stop.wait(self._period)
        finally:
            source.close()

    def push(self, grab: Grab) -> None:
        with self._lock:
            self._grabs.append(grab)

    def before(self, t: float) -> Grab | None:
        """The last grab completed before ``t`` (None if the ring has none that old)."""
        with self._lock:
            grabs = list(self._grabs)
        i = bisect.bisect_left([g.t for g in grabs], t)
        return grabs[i - 1] if i > 0 else None

    def clear(self) -> None:
        """Forget every grab (on pause, exclusion or forget: nothing from then is kept)."""
        with self._lock:
            self._grabs.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.clear()
