"""The focused window and the monitor layout on X11 with python-xlib (EWMH, RandR/Xinerama).

Focus and title changes are events, not polls: the source listens for PropertyNotify of
``_NET_ACTIVE_WINDOW`` on the root and of the title on the focused window. Without an EWMH
window manager (focus = the window under the pointer) it has nothing to listen to and says
"changed" every time, so the caller polls.

The list of visible windows (asked for at every kept frame, to black out excluded ones) is
cached: ~5 round trips per window otherwise. Any event that may change it drops the cache:
a top-level window mapped, unmapped, moved, resized, restacked or destroyed (root
SubstructureNotify), the window manager's stacking list, or a listed window's title or class.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import Xlib.display
import Xlib.error
import Xlib.X
import Xlib.Xatom

from keystep.capture.sources.base import (
    DisplayLost,
    MonitorSource,
    SourceError,
    WindowInfo,
    WindowSource,
)
from keystep.model.batch import Monitor

_MAX_TITLE = 512
# Root SubstructureNotify events that change which top-level windows are where.
_LAYOUT_EVENTS = frozenset(
    {
        Xlib.X.ConfigureNotify,
        Xlib.X.MapNotify,
        Xlib.X.UnmapNotify,
        Xlib.X.DestroyNotify,
        Xlib.X.ReparentNotify,
        Xlib.X.GravityNotify,
        Xlib.X.CirculateNotify,
    }
)


def open_display(name: str) -> Xlib.display.Display:
    try:
        return Xlib.display.Display(name)
    except Exception as exc:
        raise SourceError(f"cannot open X display {name}: {exc}") from exc


P = ParamSpec("P")
R = TypeVar("R")


def display_lost(name: str) -> DisplayLost:
    """What every X11 source raises once its connection to ``name`` broke."""
    return DisplayLost(f"lost the X display {name} (its server ended)")


def _reports_loss(
    method: Callable[Concatenate[X11WindowSource, P], R],
) -> Callable[Concatenate[X11WindowSource, P], R]:
    """A broken connection (the X server ended) becomes :class:`DisplayLost`."""

    @functools.wraps(method)
    def call(self: X11WindowSource, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except (Xlib.error.ConnectionClosedError, OSError) as exc:
            raise display_lost(self._name) from exc

    return call


class X11WindowSource(WindowSource):
    """One X connection, used by one thread only (python-xlib connections are not shared)."""

    def __init__(self, display: str) -> None:
        self._name = display
        self._d = open_display(display)
        self._root = self._d.screen().root
        atom = self._d.intern_atom
        self._active = atom("_NET_ACTIVE_WINDOW")
        self._stacking = atom("_NET_CLIENT_LIST_STACKING")
        self._wm_name = atom("_NET_WM_NAME")
        self._wm_pid = atom("_NET_WM_PID")
        self._utf8 = atom("UTF8_STRING")
        self._check = atom("_NET_SUPPORTING_WM_CHECK")
        self._title_atoms = (self._wm_name, Xlib.Xatom.WM_NAME)
        self._list_atoms = (self._stacking, atom("_NET_CLIENT_LIST"))
        self._extents = atom("_NET_FRAME_EXTENTS")
        self._describe_atoms = (*self._title_atoms, Xlib.Xatom.WM_CLASS, self._extents)
        self._watched: int | None = None
        self._polling = True  # until focused() has found an EWMH active window
        self._focus_dirty = False
        # Server times of _NET_ACTIVE_WINDOW changes and of the focused window's title
        # changes, not taken yet.
        self._focus_ms: list[int] = []
        self._visible: list[WindowInfo] | None = None
        self._restacked = False
        self._stack: list[int] = []  # the stacking list the cached windows came from
        self._listed: set[int] = set()  # windows whose property changes we select
        self._root.change_attributes(
            event_mask=Xlib.X.PropertyChangeMask | Xlib.X.SubstructureNotifyMask
        )

    def _drain(self) -> None:
        """Take every event already received: note focus changes, drop a stale window list."""
        d = self._d
        root = self._root.id
        while d.pending_events():
            ev = d.next_event()
            if ev.type != Xlib.X.PropertyNotify:
                if ev.type in _LAYOUT_EVENTS:
                    self._visible = None
                continue
            wid = int(ev.window.id)
            if wid == root:
                if ev.atom == self._active:
                    self._focus_dirty = True
                    self._focus_ms.append(int(ev.time))
                elif ev.atom in self._list_atoms:
                    # Window managers rewrite the list on every click, mostly unchanged.
                    self._restacked = True
                continue
            if wid == self._watched and ev.atom in self._title_atoms:
                # A new title can make the same window excluded (a bank's page loaded in the
                # browser): its time orders it against keys as a focus change's does.
                self._focus_dirty = True
                self._focus_ms.append(int(ev.time))
            if wid in self._listed and ev.atom in self._describe_atoms:
                self._visible = None

    @_reports_loss
    def changed(self) -> bool:
        self._drain()
        dirty, self._focus_dirty = self._polling or self._focus_dirty, False
        return dirty

    def take_focus_changes(self) -> list[int]:
        # Those drained by changed(), which callers ask first.
        taken, self._focus_ms = self._focus_ms, []
        return taken

    def times_focus_changes(self) -> bool:
        # With an EWMH window manager, _NET_ACTIVE_WINDOW's PropertyNotify events carry the
        # server time of each change; without one, focus is the window under the pointer.
        return not self._polling

    def _watch(self, handle: int | None) -> None:
        """Listen for title changes of ``handle`` (and no longer of the previous window)."""
        if handle == self._watched:
            return
        gone = Xlib.error.CatchError(Xlib.error.BadWindow)  # either may be destroyed by now
        if self._watched is not None and self._watched not in self._listed:
            old = self._d.create_resource_object("window", self._watched)
            old.change_attributes(event_mask=Xlib.X.NoEventMask, onerror=gone)
        if handle is not None:
            new = self._d.create_resource_object("window", handle)
            new.change_attributes(event_mask=Xlib.X.PropertyChangeMask, onerror=gone)
        self._watched = handle

    @_reports_loss
    def has_window_manager(self) -> bool:
        prop = self._root.get_full_property(self._check, Xlib.X.AnyPropertyType)
        return bool(prop and prop.value)

    @_reports_loss
    def focused(self) -> int | None:
        prop = self._root.get_full_property(self._active, Xlib.Xatom.WINDOW)
        if prop is not None and len(prop.value):
            self._polling = False
            wid = int(prop.value[0]) or None
            # Selected before the caller reads the title, so no later change goes unseen.
            self._watch(wid)
            return wid
        # No EWMH window manager: the window under the pointer stands in for focus.
        self._polling = True
        child = self._root.query_pointer().child
        if not child:
            return None
        return self._client_of(child)

    def _client_of(self, window: Any, depth: int = 0) -> int | None:
        """The descendant that carries WM_CLASS (the app's own window, not a frame)."""
        try:
            if window.get_wm_class() is not None:
                return int(window.id)
            if depth >= 2:
                return None
            for child in reversed(window.query_tree().children):
                found = self._client_of(child, depth + 1)
                if found:
                    return found
        except Xlib.error.XError:
            return None
        return None

    @_reports_loss
    def describe(self, handle: int) -> WindowInfo | None:
        w = self._d.create_resource_object("window", handle)
        try:
            cls = w.get_wm_class()
            title = self._title(w)
            pid_prop = w.get_full_property(self._wm_pid, Xlib.Xatom.CARDINAL)
            g = w.get_geometry()
            pos = w.translate_coords(self._root, 0, 0)
            ext = w.get_full_property(self._extents, Xlib.Xatom.CARDINAL)
        except (Xlib.error.XError, AttributeError):
            return None
        pid = int(pid_prop.value[0]) if pid_prop is not None and len(pid_prop.value) else None
        # translate_coords from the window to root returns minus the window's root position.
        x, y, width, height = -int(pos.x), -int(pos.y), int(g.width), int(g.height)
        outer = None
        if ext is not None and len(ext.value) == 4:
            left, right, top, bottom = (int(v) for v in ext.value)
            outer = (x - left, y - top, width + left + right, height + top + bottom)
        app = cls[1] if cls else None
        return WindowInfo(
            handle=handle,
            app=app,
            title=title,
            pid=pid,
            geometry=(x, y, width, height),
            outer=outer,
        )

    def _title(self, w: Any) -> str | None:
        prop = w.get_full_property(self._wm_name, self._utf8)
        if prop is not None and prop.value:
            raw = prop.value
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            return text[:_MAX_TITLE]
        name = w.get_wm_name()
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        return str(name)[:_MAX_TITLE] if name else None

    @_reports_loss
    def visible(self) -> list[WindowInfo]:
        # Events sent before the caller's last round trip (focused()) are all queued by now.
        self._drain()
        if self._restacked and self._visible is not None:
            self._restacked = False
            if self._stacking_list() != self._stack:
                self._visible = None
        if self._visible is None:
            self._restacked = False
            self._visible = self._list_visible()
        return list(self._visible)

    def _stacking_list(self) -> list[int]:
        prop = self._root.get_full_property(self._stacking, Xlib.Xatom.WINDOW)
        return [int(v) for v in prop.value] if prop is not None else []

    def _list_visible(self) -> list[WindowInfo]:
        self._stack = self._stacking_list()
        if self._stack:
            handles = list(self._stack)
        else:
            handles = []
            for child in self._root.query_tree().children:
                try:
                    if child.get_attributes().map_state != Xlib.X.IsViewable:
                        continue
                except Xlib.error.XError:
                    continue
                client = self._client_of(child)
                if client:
                    handles.append(client)
        gone = Xlib.error.CatchError(Xlib.error.BadWindow)
        self._listed &= set(handles)  # closed windows: their events no longer matter
        for h in handles:
            if h not in self._listed:
                # Selected before describe() reads them, so no later change goes unseen.
                w = self._d.create_resource_object("window", h)
                w.change_attributes(event_mask=Xlib.X.PropertyChangeMask, onerror=gone)
                self._listed.add(h)
        out = []
        for h in handles:
            info = self.describe(h)
            if info is not None:
                out.append(info)
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a connection the server already closed
            self._d.close()


class X11MonitorSource(MonitorSource):
    """One connection, opened at the first call and kept: a connection costs ~4 ms of CPU
    (setup, keymap, extensions), asked again at every sealed batch. A broken one is
    reported and replaced at the next call."""

    def __init__(self, display: str) -> None:
        self._name = display
        self._d: Xlib.display.Display | None = None

    def monitors(self) -> list[Monitor]:
        if self._d is None:
            self._d = open_display(self._name)
        try:
            return self._monitors(self._d)
        except Exception as exc:
            self.close()
            raise SourceError(f"cannot read the monitors of {self._name}: {exc}") from exc

    def close(self) -> None:
        if self._d is not None:
            d, self._d = self._d, None
            with contextlib.suppress(Exception):
                d.close()

    @staticmethod
    def _monitors(d: Xlib.display.Display) -> list[Monitor]:
        root = d.screen().root
        found: list[Monitor] = []
        if d.has_extension("RANDR"):
            try:
                reply = root.xrandr_get_monitors(is_active=True)
                found = [
                    Monitor(
                        int(m.x),
                        int(m.y),
                        int(m.width_in_pixels),
                        int(m.height_in_pixels),
                        bool(m.primary),
                    )
                    for m in reply.monitors
                ]
            except (Xlib.error.XError, AttributeError):
                found = []
        if not found and d.has_extension("XINERAMA"):
            try:
                screens = d.xinerama_query_screens().screens
                found = [
                    Monitor(int(s.x), int(s.y), int(s.width), int(s.height), i == 0)
                    for i, s in enumerate(screens)
                ]
            except (Xlib.error.XError, AttributeError):
                found = []
        if not found:
            s = d.screen()
            found = [Monitor(0, 0, int(s.width_in_pixels), int(s.height_in_pixels), True)]
        return found
