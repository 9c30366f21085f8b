"""A small in-memory ring of recent screen grabs, so an action can get the screen before it.

Grabs are raw pixels in memory only; they are never written anywhere. A new grab is taken
only when the source reports that the screen changed (X DAMAGE), at most ``rate_hz`` times a
second, so a still screen costs nothing and its one grab stays valid however old it is. The
ring is bounded by ``seconds`` of history, and the pipeline trims it to what it may still ask
for (``trim``), so it usually holds one or two grabs (4 MB each at 1280x800).
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from keystep.capture.sources.base import Grab, ScreenSource

DEFAULT_RATE_HZ = 4.0
# How long the ring thread blocks waiting for a change at most: ``clear`` and ``stop`` wake it
# at once, so this only bounds a source that cannot be woken.
WAIT_S = 2.0


class FrameRing:
    def __init__(
        self,
        open_source: Callable[[], ScreenSource],
        *,
        rate_hz: float = DEFAULT_RATE_HZ,
        seconds: float = 2.0,
    ) -> None:
        self._open_source = open_source
        self._period = 1.0 / rate_hz
        self._grabs: deque[Grab] = deque(maxlen=max(2, int(rate_hz * seconds)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._regrab = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: ScreenSource | None = None  # open on the ring's thread; under _lock
        self.error: str | None = None
        self.grabs = 0

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
        with self._lock:
            self._source = source
        try:
            while not self._stop.is_set():
                try:
                    changed = source.wait_change(WAIT_S)
                except Exception as exc:
                    self.error = type(exc).__name__
                    changed = True
                if self._regrab.is_set():
                    self._regrab.clear()
                    changed = True
                if not changed:
                    continue
                started = time.monotonic()
                try:
                    grab = source.grab()
                except Exception as exc:
                    self.error = type(exc).__name__
                else:
                    self.push(grab)
                    self.grabs += 1
                self._stop.wait(max(0.0, self._period - (time.monotonic() - started)))
        finally:
            with self._lock:
                self._source = None
            with contextlib.suppress(Exception):  # a connection the server already closed
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

    def trim(self, t: float) -> None:
        """Drop grabs nobody can ask for: those older than the last grab before ``t``."""
        with self._lock:
            while len(self._grabs) >= 2 and self._grabs[1].t < t:
                self._grabs.popleft()

    def clear(self) -> None:
        """Forget every grab (on pause, exclusion or forget: nothing from then is kept) and
        take a fresh one, since an unchanged screen would otherwise bring none."""
        with self._lock:
            self._grabs.clear()
        self._regrab.set()
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._source is not None:
                self._source.wake()

    def __len__(self) -> int:
        with self._lock:
            return len(self._grabs)

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            self._grabs.clear()
