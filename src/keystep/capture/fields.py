"""What the platform says about the focused field: is a password being typed into it?

X11 knows windows, not fields, so each probe asks somewhere else. ``PtyEchoProbe`` asks the
kernel: a terminal emulator's pseudo-terminals carry the line discipline's flags, and a
program reading a secret (sudo, ssh, su, passwd, gpg, ``read -s``) turns ECHO off while
keeping ICANON (line editing) on. Full-screen programs (vim, less, tmux, a remote ssh
session) turn both off, so that state says nothing.

Probes run on the recorder's event loop at the first key of every typing run, so each one is
cheap and its work bounded (at most ``_MAX_FDS`` of the emulator's fds, ``_MAX_PTYS`` ptys;
the /proc-wide fallback scan stops at ``BUDGET_S``): what can be found out once per window
(which ptys belong to the terminal) is cached briefly; the echo flag is read afresh.
"""

from __future__ import annotations

import contextlib
import os
import termios
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from keystep.capture.sources.base import WindowInfo

BUDGET_S: Final = 0.002
CACHE_S: Final = 1.0
# Bounds on the work per probe, so the cost does not depend on how loaded the machine is
# (a wall-clock cut-off would turn a preempted probe into a missed password).
_MAX_FDS: Final = 512
_MAX_PTYS: Final = 32
# Unix98 pty slaves: majors 136-143, minor = index within the major.
_PTS_MAJORS: Final = range(136, 144)
_PTMX: Final = frozenset({"/dev/ptmx", "/dev/pts/ptmx"})


class FieldProbe(ABC):
    """Tells whether the focused window's field reads a password."""

    @abstractmethod
    def password_state(self, window: WindowInfo) -> bool | None:
        """True: a password is being read; False: an ordinary field; None: cannot tell."""

    def close(self) -> None:
        """Release what the probe holds (threads, connections)."""
        return None


class AnyProbe(FieldProbe):
    """Several probes: any True wins; else any False; else None."""

    def __init__(self, probes: Sequence[FieldProbe]) -> None:
        self.probes = tuple(probes)

    def password_state(self, window: WindowInfo) -> bool | None:
        verdicts = [p.password_state(window) for p in self.probes]
        if True in verdicts:
            return True
        return False if False in verdicts else None

    def close(self) -> None:
        for p in self.probes:
            p.close()


def default_probe(screen: ScreenFocusBoard | None = None) -> FieldProbe:
    """Every probe this platform offers; none of them blocks or fails the caller. With
    ``screen``, also what the kept frames say (the board the recorder's redaction posts to)."""
    probes: list[FieldProbe] = [PtyEchoProbe(), AtspiFocusProbe()]
    if screen is not None:
        probes.append(ScreenFocusProbe(screen))
    return AnyProbe(probes)


class ScreenFocusBoard:
    """The screen redactor's word on the focused field, from the frame kept last: the
    recorder clears it at a typing run's first key, keeps that key's frame (its redaction
    adapter posts what it shows), then asks the probes. No frame kept for the run (the
    frame cap): no word. One per recorder, handed to its redaction and its probes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: bool | None = None

    def post(self, password: bool | None) -> None:
        """Whether the focused field of the frame just kept is a password field (None:
        not known)."""
        with self._lock:
            self._last = password

    def clear(self) -> None:
        """Forget the last word: a typing run starts, and only its own frame may speak."""
        with self._lock:
            self._last = None

    def read(self) -> bool | None:
        with self._lock:
            return self._last


class ScreenFocusProbe(FieldProbe):
    """What the pixels of the frame kept at the run's first key say: the field that took
    the focus (it gained a focus ring or a caret) has a label naming a secret ("PIN",
    "Password"). For toolkits that tell nothing else (Tk, Swing without an ATK bridge)."""

    def __init__(self, board: ScreenFocusBoard) -> None:
        self._board = board

    def password_state(self, window: WindowInfo) -> bool | None:
        return True if self._board.read() else None


@dataclass(slots=True)
class _Ptys:
    t: float
    paths: tuple[str, ...]


class PtyEchoProbe(FieldProbe):
    """Echo-off detection for terminal emulators on Linux, through /proc and termios.

    The terminal's ptys are found from the emulator's own process (the window's
    ``_NET_WM_PID``): each pty master it holds names its slave in ``fdinfo``
    (``tty-index``). Kernels without that line fall back to the controlling ttys of the
    emulator's child processes. A terminal with several tabs has several ptys; a secret
    prompt in any of them masks what is typed in the window, since X does not say which
    tab has the keyboard.
    """

    def __init__(self, *, proc: Path = Path("/proc"), budget_s: float = BUDGET_S) -> None:
        self._proc = proc
        self._budget_s = budget_s
        self._cache: dict[tuple[int, int], _Ptys] = {}

    def password_state(self, window: WindowInfo) -> bool | None:
        if window.pid is None or window.pid <= 0:
            return None
        paths = self._ptys(window.handle, window.pid)
        return True if any(_reads_secret(path) for path in paths) else None

    def _ptys(self, handle: int, pid: int) -> tuple[str, ...]:
        now = time.monotonic()
        key = (handle, pid)
        hit = self._cache.get(key)
        if hit is not None and now - hit.t < CACHE_S:
            return hit.paths
        if len(self._cache) > 64:
            self._cache = {k: v for k, v in self._cache.items() if now - v.t < CACHE_S}
        indexes = sorted(set(self._master_indexes(pid)))
        if not indexes:
            indexes = sorted(set(self._child_ttys(pid, time.perf_counter() + self._budget_s)))
        paths = tuple(f"/dev/pts/{i}" for i in indexes[:_MAX_PTYS])
        self._cache[key] = _Ptys(now, paths)
        return paths

    def _master_indexes(self, pid: int) -> Iterator[int]:
        fd_dir = self._proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return
        for fd in fds[:_MAX_FDS]:
            try:
                if os.readlink(fd_dir / fd) not in _PTMX:
                    continue
                info = (self._proc / str(pid) / "fdinfo" / fd).read_text()
            except OSError:
                continue
            for line in info.splitlines():
                name, _, value = line.partition(":")
                if name == "tty-index" and value.strip().isdigit():
                    yield int(value)

    def _child_ttys(self, pid: int, deadline: float) -> Iterator[int]:
        """Pty indexes that the emulator's children have as controlling terminal. This scans
        every process, so it alone is cut off by time (and its result cached)."""
        try:
            entries = os.listdir(self._proc)
        except OSError:
            return
        for entry in entries:
            if time.perf_counter() > deadline:
                return
            if not entry.isdigit():
                continue
            try:
                stat = (self._proc / entry / "stat").read_bytes()
            except OSError:
                continue
            # The command name may contain spaces and parentheses: fields follow the last ')'.
            fields = stat.rpartition(b")")[2].split()
            if len(fields) < 5 or int(fields[1]) != pid:
                continue
            tty_nr = int(fields[4])
            major, minor = os.major(tty_nr), os.minor(tty_nr)
            if major in _PTS_MAJORS:
                yield (major - _PTS_MAJORS.start) * 256 + minor


def _reads_secret(path: str) -> bool:
    """ECHO off with ICANON on: a program is reading a line it does not show."""
    try:
        # O_NOCTTY: never become this terminal's controller; O_NONBLOCK: never wait on it.
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        lflag = termios.tcgetattr(fd)[3]
    except termios.error:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return not lflag & termios.ECHO and bool(lflag & termios.ICANON)


# AT-SPI (org.a11y.atspi) constants: Accessible.GetRole's value for a password entry.
ROLE_PASSWORD_TEXT: Final = 40
_FOCUS_EVENT: Final = "object:state-changed:focused"
_CALL_TIMEOUT_S: Final = 0.5
RETRY_S: Final = 5.0


_MAX_APPS: Final = 256


class AtspiFocusProbe(FieldProbe):
    """The focused accessible object's role, from the accessibility bus (GTK, Qt with
    QT_ACCESSIBILITY=1, Firefox, Chromium with accessibility on).

    A thread of its own follows ``object:state-changed:focused`` events over D-Bus (jeepney,
    no GObject) and asks each newly focused object for its role and its process; the probe
    itself only reads what the thread last saw, so it costs microseconds. The bus is the one
    in ``AT_SPI_BUS_ADDRESS``, or the one ``org.a11y.Bus`` on the session bus names (never
    started by keystep: if no accessibility bus runs, the probe says nothing). The verdict
    applies only to the window of the process that owns the focused object. The last focused
    object is kept per process, since a window that gets the focus back does not announce
    its focused field again.
    """

    def __init__(self, *, address: str | None = None) -> None:
        self._address = address
        self._roles: dict[int, int] = {}  # pid -> role of its last focused object
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="keystep-atspi", daemon=True)
        self._thread.start()

    def password_state(self, window: WindowInfo) -> bool | None:
        # One reference read: the thread replaces the dict, never mutates it.
        role = self._roles.get(window.pid) if window.pid is not None else None
        return True if role == ROLE_PASSWORD_TEXT else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * _CALL_TIMEOUT_S + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:
                # No accessibility bus (yet), or it went away: the other probes and the
                # heuristics remain, and the bus is looked for again a little later.
                self.error = f"{type(exc).__name__}: {exc}"[:200]
            self._roles = {}
            self.connected.clear()
            self._stop.wait(RETRY_S)

    def _follow(self) -> None:
        from jeepney import DBusAddress, MatchRule, new_method_call
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.low_level import HeaderFields

        address = self._address or os.environ.get("AT_SPI_BUS_ADDRESS") or _a11y_bus_address()
        if not address:
            self.error = "no accessibility bus"
            return
        self.error = None
        with contextlib.closing(open_dbus_connection(address)) as conn:
            rule = MatchRule(
                type="signal", interface="org.a11y.atspi.Event.Object", member="StateChanged"
            )
            conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=_CALL_TIMEOUT_S)
            registry = DBusAddress(
                "/org/a11y/atspi/registry",
                bus_name="org.a11y.atspi.Registry",
                interface="org.a11y.atspi.Registry",
            )
            # Toolkit bridges emit only the events some client has registered for.
            conn.send_and_get_reply(
                new_method_call(registry, "RegisterEvent", "s", (_FOCUS_EVENT,)),
                timeout=_CALL_TIMEOUT_S,
            )
            self.connected.set()
            with conn.filter(rule) as signals:
                while not self._stop.is_set():
                    try:
                        msg = conn.recv_until_filtered(signals, timeout=_CALL_TIMEOUT_S)
                    except TimeoutError:
                        continue
                    detail, gained = msg.body[0], msg.body[1]
                    if detail != "focused" or gained != 1:
                        continue
                    sender = msg.header.fields[HeaderFields.sender]
                    path = msg.header.fields[HeaderFields.path]
                    obj = DBusAddress(path, bus_name=sender, interface="org.a11y.atspi.Accessible")
                    role = _reply(conn, new_method_call(obj, "GetRole"))
                    pid = _reply(conn, message_bus.GetConnectionUnixProcessID(sender))
                    if isinstance(pid, int):
                        roles = {k: v for k, v in self._roles.items() if k != pid}
                        if isinstance(role, int):
                            roles[pid] = role
                        # Newest last: the oldest processes are forgotten first.
                        self._roles = dict(list(roles.items())[-_MAX_APPS:])


def _reply(conn: Any, msg: Any) -> object:
    """The first value of a method's reply, or None for an error reply."""
    from jeepney import MessageType

    reply = conn.send_and_get_reply(msg, timeout=_CALL_TIMEOUT_S)
    if reply.header.message_type != MessageType.method_return or not reply.body:
        return None
    return reply.body[0]


def _a11y_bus_address() -> str | None:
    """Where the session's accessibility bus listens, without starting one."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return None
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.low_level import MessageFlag

    with contextlib.closing(open_dbus_connection("SESSION")) as session:
        msg = new_method_call(
            DBusAddress("/org/a11y/bus", bus_name="org.a11y.Bus", interface="org.a11y.Bus"),
            "GetAddress",
        )
        msg.header.flags |= MessageFlag.no_auto_start
        reply = session.send_and_get_reply(msg, timeout=_CALL_TIMEOUT_S)
    if reply.header.message_type != MessageType.method_return or not reply.body:
        return None
    return str(reply.body[0]) or None
