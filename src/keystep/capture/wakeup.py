"""A thread asleep in ``select`` woken from another thread: a non-blocking self-pipe."""

from __future__ import annotations

import contextlib
import os
import threading


class Wakeup:
    """``fileno()`` becomes readable after ``wake()`` (from any thread) until ``drain()``.
    Wakes pile up into one; after ``close()`` a wake does nothing."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()  # a wake never writes to a descriptor being closed
        self._closed = False

    def fileno(self) -> int:
        return self._r

    def wake(self) -> None:
        with self._lock:
            if not self._closed:
                with contextlib.suppress(BlockingIOError):  # full: a wake is pending already
                    os.write(self._w, b"w")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._r)
                os.close(self._w)
