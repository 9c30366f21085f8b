"""The interfaces every platform's capture sources implement (X11 today; others later)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from keystep.model.batch import Monitor

# Raw input kinds a source reports; the pipeline turns them into model events.
MOVE: Final = "move"
BUTTON_DOWN: Final = "down"
BUTTON_UP: Final = "up"
SCROLL: Final = "scroll"
KEY_PRESS: Final = "key_press"
KEY_RELEASE: Final = "key_release"


class SourceError(RuntimeError):
    """A source cannot start (no display, a missing extension, ...). One line, no content."""


class DisplayLost(SourceError):
    """The display a running source was reading from went away (the X server ended, the
    session logged out): nothing more can be seen or attributed to a window."""


@dataclass(frozen=True, slots=True)
class RawInput:
    """One input as a source saw it, stamped with the wall clock when it arrived.

    For keys: ``keycode`` is the hardware code (press and release pair by it, because shift
    changes the character), ``name`` the key's name when it is not printable, ``char`` the
    character it produces when printable, ``base`` the unshifted character (for hotkeys).
    ``server_ms`` is the display server's own timestamp of the event where it has one (X:
    milliseconds, wrapping at 2**32): it orders the input against focus changes exactly,
    however late either reached keystep.
    """

    t: float
    kind: str
    x: int = 0
    y: int = 0
    button: str = ""
    dx: int = 0
    dy: int = 0
    keycode: int = 0
    name: str | None = None
    char: str | None = None
    base: str | None = None
    server_ms: int | None = None


InputSink = Callable[[RawInput], None]


class InputSource(ABC):
    """Pointer and keyboard. ``start`` delivers every input to ``sink`` from its own threads."""

    @abstractmethod
    def start(self, sink: InputSink) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def failure(self) -> str | None:
        """Why the source stopped delivering on its own since ``start`` (its display went
        away), or None while it runs. Cheap: asked at every tick."""
        return None

    def sample_pointer(self) -> RawInput | None:
        """Where the pointer is, for a caller that samples it at its own cadence on its own
        thread: a ``MOVE`` when it moved since the last sample, else None (also from sources
        that follow no pointer). May raise :class:`DisplayLost`."""
        return None


@dataclass(frozen=True, slots=True)
class Grab:
    """A raw screenshot of the virtual screen, in memory only. ``t`` is when it completed."""

    t: float
    x: int
    y: int
    w: int
    h: int
    bgra: bytes | bytearray  # owned by the grab: the source's buffer is copied once, here


class ScreenSource(ABC):
    """Screenshots of the whole virtual screen (all monitors)."""

    @abstractmethod
    def grab(self) -> Grab: ...

    def wait_change(self, timeout: float) -> bool:
        """Block up to ``timeout`` s for the screen to change since the last grab; True when
        it may have. Sources that cannot tell always say True, so callers grab at their rate."""
        return True

    def wake(self) -> None:
        """Make a ``wait_change`` blocked on another thread return now (False unless the
        screen changed). Callable from any thread until ``close``."""
        return  # the default wait_change does not block

    @abstractmethod
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WindowInfo:
    """A top-level window. ``handle`` is the platform's id; never serialised as such.

    ``geometry`` is the app's own area; ``outer`` adds the window manager's frame (title bar,
    borders), which is what an excluded window's blackout must cover: the title bar shows
    the very title that made it excluded.
    """

    handle: int
    app: str | None
    title: str | None
    pid: int | None
    geometry: tuple[int, int, int, int] | None
    outer: tuple[int, int, int, int] | None = None


class WindowSource(ABC):
    """The focused window, and the windows visible on screen (to black out excluded ones)."""

    @abstractmethod
    def focused(self) -> int | None:
        """The focused top-level window's handle: one cheap query (a round trip)."""

    def changed(self) -> bool:
        """Whether focus or the focused window's title may have changed since the last call,
        answered from memory (sources that cannot tell always say True, so callers poll)."""
        return True

    def take_focus_changes(self) -> list[int]:
        """The display server's timestamps of the focus changes, and of the focused window's
        title changes, that ``changed`` has seen since the last call (same clock as
        ``RawInput.server_ms``; empty where the platform gives none)."""
        return []

    def times_focus_changes(self) -> bool:
        """Whether every focus change reaches ``take_focus_changes`` with its server time,
        so that an input handled a little late can still be placed in the window it went to
        (False: the focused window is known only as of the moment it is asked, so inputs
        must be handled as they arrive)."""
        return False

    @abstractmethod
    def describe(self, handle: int) -> WindowInfo | None:
        """App class, title, pid and geometry (None when the window is gone)."""

    @abstractmethod
    def visible(self) -> list[WindowInfo]:
        """Mapped top-level windows, bottom to top."""

    @abstractmethod
    def close(self) -> None: ...


class MonitorSource(ABC):
    """The monitor layout in virtual-screen coordinates."""

    @abstractmethod
    def monitors(self) -> list[Monitor]: ...

    def close(self) -> None:
        """Release what ``monitors`` keeps open (it may be called again afterwards)."""
        return  # nothing kept by default
