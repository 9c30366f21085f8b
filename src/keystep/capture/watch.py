"""Whether anything in a few folders changed, told by the kernel (Linux inotify) not by stats.

The recorder looks at its pause, consent, manifest and exclusion files at every tick; with
a watch it need not stat them while nothing changed, and it can sleep longer while the user
is idle, since a change wakes it at once (its descriptor goes into the recorder's select).
Files there are replaced by rename, so the folders are watched, not the files. Anything the
watch cannot vouch for (a folder that went away, an overflowing event queue) makes it say
"changed" from then on: the caller falls back to looking every time.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import struct
import sys
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

_IN_NONBLOCK: Final = os.O_NONBLOCK
_IN_CLOEXEC: Final = os.O_CLOEXEC
# IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE,
# IN_DELETE_SELF, IN_MOVE_SELF
_MASK: Final = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
# IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED: the watch no longer sees everything.
_BROKEN: Final = 0x400 | 0x800 | 0x4000 | 0x8000
_EVENT: Final = struct.Struct("iIII")


class FolderWatch:
    """``changed()``: whether a file of one of ``names`` in the folders may have changed
    since the last call. ``fileno()``: readable when something in the folders changed (None
    where there is no kernel watch)."""

    def __init__(self, folders: Iterable[Path], names: Iterable[str]) -> None:
        self._fd: int | None = None
        self._broken = True
        self._names = {os.fsencode(n) for n in names}
        self._close: weakref.finalize[Any, Any] | None = None
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        for folder in folders:
            if libc.inotify_add_watch(fd, os.fsencode(folder), _MASK) < 0:
                os.close(fd)
                return
        self._fd, self._broken = fd, False
        self._close = weakref.finalize(self, os.close, fd)

    def fileno(self) -> int | None:
        return None if self._broken else self._fd

    def changed(self) -> bool:
        if self._broken or self._fd is None:
            return True
        seen = False
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                return seen
            except OSError:
                self._break()
                return True
            if not data:
                return seen
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                if mask & _BROKEN:
                    self._break()
                    return True
                start = offset + _EVENT.size
                name = data[start : start + length].rstrip(b"\0")
                seen = seen or name in self._names
                offset = start + length

    def _break(self) -> None:
        self._broken = True
        self.close()

    def close(self) -> None:
        self._fd = None
        if self._close is not None:
            with contextlib.suppress(OSError):
                self._close()
