"""The recorder: sources → gate → typed text and frames → redaction → batcher → seal → outbox.

Threads: pynput's two RECORD listeners and the screen ring only put raw input or pixels in
memory, and the tray indicator only shows or hides its icon; everything else runs on the
calling (main) thread, which also receives SIGINT and SIGTERM. That thread samples the
pointer at the manifest's rate while it moves, and ticks (10 Hz; 4 Hz while idle, when the
gate's file watch wakes it on any change) to re-read the pause, consent and exclusion
files, take focus and title changes the window source reported, show the indicator, and
close batches that are due (``_run_loop``). Focus is asked of the X server afresh (a round
trip) at every button press, scroll, first key of a typing run, special key or hotkey, and
kept frame; every other key checks the changes the window source has already received.

Crash-loss bound: a ``kill -9`` loses at most the batch in assembly (``manifest.batching``:
at most ``max_seconds`` of activity, default 15 s, plus up to 10 s while a typing run
that straddles the limit finishes) plus any batch that could not yet be
written (disk full); nothing that reached the outbox is lost, since ``Outbox.put`` commits
with fsync before it returns.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import queue
import re
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

from keystep.capture.batcher import Batcher
from keystep.capture.fields import FieldProbe, ScreenFocusBoard, default_probe
from keystep.capture.frames import FrameEncoder, FrameRate, Image, to_rgb
from keystep.capture.gate import BLOCKED, NO_CONSENT, PAUSED, RECORDING, Gate, read_consent
from keystep.capture.indicator import TrayIndicator
from keystep.capture.redaction import Redaction
from keystep.capture.ring import FrameRing
from keystep.capture.sealer import FetchKey, Sealer, SealError
from keystep.capture.sources.base import (
    BUTTON_DOWN,
    BUTTON_UP,
    KEY_PRESS,
    KEY_RELEASE,
    MOVE,
    SCROLL,
    DisplayLost,
    RawInput,
    SourceError,
    WindowInfo,
)
from keystep.capture.typing import PASSWORD_RUN, TypingAssembler
from keystep.home import Home, HomeError
from keystep.model.batch import Monitor
from keystep.model.events import (
    GAP,
    POINTER_DOWN,
    POINTER_MOVE,
    POINTER_SCROLL,
    POINTER_UP,
    SCREEN_FRAME,
    TEXT_TYPED,
    WINDOW_FOCUS,
    Event,
)
from keystep.model.manifest import Manifest, ManifestError, load_manifest
from keystep.model.periods import period_of
from keystep.outbox import Outbox, OutboxError
from keystep.seal.device import DeviceKeyError, load_device_key

STATUS_SCHEMA: Final = "keystep-recorder-status/1"
TICK_S: Final = 0.1
# A pointer still for this long is sampled with the tick only, not at the manifest's rate;
# the first move after a rest is then seen up to one tick late.
POINTER_IDLE_AFTER_S: Final = 1.0
# With no input, no pointer move and no typing run for this long the tick slows down (when
# the gate's file watch can wake the recorder): an idle recorder costs a third as much.
IDLE_AFTER_S: Final = 2.0
IDLE_TICK_S: Final = 0.25
STATUS_EVERY_S: Final = 1.0
SCROLL_BURST_S: Final = 0.5
# Grabs older than this before "now" are trimmed from the ring once the input queue is empty.
RING_KEEP_S: Final = 0.5
EXCLUDED: Final = "excluded"


class RecorderError(RuntimeError):
    """The recorder cannot start or must stop. One line, no recorded content."""


def forget_request_file(home: Home) -> Path:
    return home.state_dir / "forget.json"


def _server_not_before(a: int, b: int) -> bool:
    """Whether X server time ``a`` is at or after ``b`` (32-bit milliseconds that wrap)."""
    return (a - b) & 0xFFFFFFFF < 0x80000000


def write_status(path: Path, doc: dict[str, Any]) -> None:
    """Atomic but not fsync'd: the status file is advisory and rewritten every second."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    data = json.dumps(doc, sort_keys=True).encode()
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass
class _Counts:
    events: int = 0
    frames: int = 0
    batches: int = 0
    dropped_frames: int = 0


@dataclass
class _Window:
    handle: int | None = None
    info: WindowInfo | None = None
    rid: int = 0
    excluded: bool = False


@dataclass
class _Unsent:
    content: Any
    t0: float
    t1: float
    sealed: tuple[str, int, bytes] | None = None


class Recorder:
    """Use ``preflight()`` (raises RecorderError), then ``run()`` on the main thread."""

    def __init__(
        self,
        home: Home,
        *,
        display: str | None = None,
        duration: float | None = None,
        fetch_key: FetchKey | None = None,
        ring_hz: float = 4.0,
    ) -> None:
        self.home = home
        self.display = display or os.environ.get("DISPLAY") or ""
        self.duration = duration
        self._fetch_key = fetch_key
        self._ring_hz = ring_hz
        self._stop = threading.Event()
        self._q: queue.SimpleQueue[RawInput] = queue.SimpleQueue()
        # Pointer samples wait here: they are taken in time order before the next input or
        # tick (a sample is delivered one period after the server read it).
        self._moves: deque[RawInput] = deque()
        # Pointer samples older than this are dropped when they arrive: an input, a window change
        # or the end of a gap was handled after them (the sampler delivers a position one
        # period after reading it), so they would land out of order, or in a window or gap
        # the recorder no longer knows they belonged to.
        self._moves_after = 0.0
        self._lock_fd: int | None = None
        self.counts = _Counts()
        self.errors: list[str] = []
        self.indicator_status = "none: not started"
        self._win = _Window()
        self._rids: dict[int, int] = {}
        self._infos: dict[int, WindowInfo] = {}
        self._gap_start: float | None = None
        self._observed_t = 0.0  # the stamp of the last window change or gap end recorded
        self._deferred = False  # focus changes seen but left for the next look
        self._focus_changes: list[int] = []  # their server times
        self._shown: bool | None = None  # what the indicator was last told
        self._clean_since = 0.0
        self._last_move_t = 0.0
        self._held_move: RawInput | None = None
        self._dropped_buttons: set[str] = set()
        self._last_scroll_t = 0.0
        self._unsent: list[_Unsent] = []
        self._forget_stamp: Any = None
        self._forget_path = str(forget_request_file(home))
        self._forget_done: str | None = None
        self._state = "starting"
        self._stopping = False  # set once stopping: queued inputs are recorded without frames
        self._lost: str | None = None  # why the display went away, once it has
        # What the kept frames say of the focused field: posted by the redaction, read by
        # the field probes at a run's first key.
        self._screen_focus = ScreenFocusBoard()
        self.started = time.time()
        self.on_sealed: Callable[[str], None] | None = None

    # -- start-up ----------------------------------------------------------------------

    def preflight(self) -> None:
        """Everything that can fail before recording starts fails here, with one line."""
        if not self.display:
            raise RecorderError("no X display (pass --display :N or set DISPLAY)")
        self._take_lock()
        try:
            cfg = self.home.read_config()
        except HomeError as exc:
            raise RecorderError(str(exc)) from exc
        try:
            self.manifest: Manifest = load_manifest(self.home.manifest_file.read_bytes())
        except OSError as exc:
            raise RecorderError(f"cannot read the manifest {self.home.manifest_file}") from exc
        except ManifestError as exc:
            raise RecorderError(f"the manifest in force is corrupt: {exc}") from exc
        if not read_consent(self.home.consent_file, self.manifest):
            raise RecorderError(
                f"no consent to manifest v{self.manifest.version} "
                "(see: keystep consent show; then keystep consent accept --yes)"
            )
        try:
            device_key = load_device_key(self.home.device_key_file)
            fetch = self._fetch_key or self._vault_fetcher(cfg)
            self.sealer = Sealer(
                device_id=str(cfg["device_id"]),
                device_key=device_key,
                pseudonym=str(cfg["pseudonym"]),
                manifest=self.manifest,
                keys_file=self.home.device_dir / "sealing_keys.json",
                fetch_key=fetch,
            )
            self.sealer.key_for(period_of(time.time()))
        except (SealError, DeviceKeyError, KeyError) as exc:
            raise RecorderError(f"cannot seal: {exc}") from exc
        try:
            self.outbox = Outbox(self.home.outbox_db)
        except OutboxError as exc:
            raise RecorderError(str(exc)) from exc
        try:
            self.redaction = Redaction(self.manifest, focus=self._screen_focus)
        except RuntimeError as exc:
            raise RecorderError(str(exc)) from exc
        self._check_display()
        self.gate = Gate(self.home, self.manifest)
        self.batcher = Batcher(self.manifest)
        self.typing = TypingAssembler()
        self.fields: FieldProbe = default_probe(self._screen_focus)
        self.frame_rate = FrameRate(self.manifest.max_fps)
        self.encoder = FrameEncoder()
        self._move_period = 1.0 / max(self.manifest.pointer_rate_hz, 0.1)

    def _take_lock(self) -> None:
        try:
            self.home.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.home.recorder_lock, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise RecorderError(f"cannot open {self.home.recorder_lock}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise RecorderError(
                f"another recorder is already running on {self.home.root} (pid {other or '?'})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _vault_fetcher(self, cfg: dict[str, Any]) -> FetchKey | None:
        vault = cfg.get("vault") or {}
        if vault.get("kind") != "local":
            return None
        path = Path(vault["path"])
        pseudonym = str(cfg["pseudonym"])

        def fetch(period: str) -> Any:
            from keystep.vault import open_local_vault

            v = open_local_vault(path)
            try:
                return v.sealing_key(pseudonym, period)
            finally:
                v.close()

        return fetch

    def _check_display(self) -> None:
        from keystep.capture.sources.x11_window import X11MonitorSource, X11WindowSource

        local = re.match(r"^:(\d+)(\.\d+)?$", self.display)
        if local and not Path(f"/tmp/.X11-unix/X{local.group(1)}").exists():
            # python-xlib would fall back to TCP and retry for many seconds.
            raise RecorderError(
                f"cannot open X display {self.display}: no X server is running there"
            )
        try:
            self.windows = X11WindowSource(self.display)
        except SourceError as exc:
            raise RecorderError(str(exc)) from exc
        d = self.windows._d
        if not d.has_extension("RECORD"):
            raise RecorderError(
                f"the X server on {self.display} lacks the RECORD extension (needed to see input)"
            )
        self._monitor_source = X11MonitorSource(self.display)
        self.monitors: list[Monitor] = self._monitor_source.monitors()

    # -- run ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        from keystep.capture.sources.x11_input import X11InputSource
        from keystep.capture.sources.x11_screen import X11ScreenSource

        display = self.display
        self.ring = FrameRing(lambda: X11ScreenSource(display), rate_hz=self._ring_hz)
        self.inputs = X11InputSource(display, pointer=POINTER_MOVE in self.manifest.kinds)
        self.indicator = TrayIndicator(display)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if SCREEN_FRAME in self.manifest.kinds:
                self.ring.start()
            try:
                self.inputs.start(self._q.put)
            except SourceError as exc:
                raise RecorderError(str(exc)) from exc
            self.indicator_status = self.indicator.start()
            # What is loaded by now lives as long as the recorder: frozen out of the cyclic
            # collector's reach, a full collection scans only what recording allocates.
            gc.collect()
            gc.freeze()
            self._loop()
        finally:
            gc.unfreeze()
            try:
                self.inputs.stop()
            except Exception as exc:  # whatever happens here, what was recorded is sealed
                self._lost = self._lost or f"input sources did not stop cleanly: {exc}"
            # Inputs still queued are recorded, without frames: each kept frame costs up to
            # its redaction budget, and a stop must not wait on a backlog of them.
            self._stopping = True
            self._drain()
            self._finish()
            self.ring.stop()
            self.indicator.stop()
            for s, h in old.items():
                signal.signal(s, h)
        if self._unsent:
            raise RecorderError(
                f"{len(self._unsent)} batch(es) could not be written: {self.errors[-1]}"
            )
        if self._lost is not None:
            raise RecorderError(f"{self._lost}; stopped, {self.counts.batches} batch(es) sealed")
        return 0

    def _loop(self) -> None:
        try:
            self._run_loop()
        except DisplayLost as exc:
            # Nothing more can be seen or attributed to a window: what was recorded is
            # sealed as the recorder stops, and it says why (it must not claim to record).
            self._lost = str(exc)

    def _run_loop(self) -> None:
        """Wake at the tick (10 Hz; 4 Hz while idle), and at the pointer's sampling rate
        while it moves.

        A wake-up and the first system calls after it cost more CPU than most of what they
        do (~100 us on a virtual machine), so one wake serves the pointer sample, the inputs
        queued since the last one and the tick. Inputs wait for it only while the window
        source times every focus change: an input handled late is then still placed in the
        window it went to. Otherwise (no window manager: focus is the window under the
        pointer, known only when asked) each input wakes this thread as it arrives, and the
        tick stays at 10 Hz. The slower idle tick needs the gate's file watch: a change to
        the pause, consent, manifest or exclusion files wakes this thread at once.
        """
        end = self.started + self.duration if self.duration else None
        next_tick = next_status = next_sample = 0.0
        sampling = POINTER_MOVE in self.manifest.kinds
        moved = active = 0.0
        inputs, windows, q, gate = self.inputs, self.windows, self._q, self.gate
        while not self._stop.is_set():
            now = time.time()
            if end is not None and now >= end:
                break
            if sampling and now >= next_sample:
                move = inputs.sample_pointer()
                if move is not None:
                    self._moves.append(move)
                    moved = active = now
                # A still pointer is looked at with the tick only (set below).
                fast = now - moved < POINTER_IDLE_AFTER_S
                next_sample = now + self._move_period if fast else float("inf")
            while not q.empty():
                self._take_input(q.get_nowait())
                active = now
            deferred = windows.times_focus_changes()
            watch = gate.watch.fileno() if deferred else None
            if now >= next_tick:
                failure = inputs.failure()
                if failure is not None:
                    raise DisplayLost(failure)
                self._take_moves(now)
                state = self._state
                self._tick(now)
                if self._state != state:
                    next_status = 0.0  # the status file says at once what changed
                idle = (
                    watch is not None
                    and now - active >= IDLE_AFTER_S
                    and self.typing.burst is None
                    and self._held_move is None
                )
                next_tick = now + (IDLE_TICK_S if idle else TICK_S)
                next_sample = min(next_sample, next_tick) if sampling else next_sample
            if now >= next_status:
                self._write_status(now)
                gate.take_changes()  # not woken by the status file just written beside them
                next_status = now + STATUS_EVERY_S
            wake = min(next_tick, next_sample) if sampling else next_tick
            timeout = max(0.0, wake - time.time())
            if deferred:
                # Not Event.wait or a timed queue get: their timed lock waits cost more CPU
                # than a sleep. A signal's stop is seen at the next wake (<= IDLE_TICK_S).
                if watch is None:
                    time.sleep(timeout)
                elif select.select([watch], [], [], timeout)[0]:
                    next_tick = 0.0  # a watched file changed: take it in now
                continue
            try:
                raw = q.get(timeout=timeout)
            except queue.Empty:
                continue
            self._take_input(raw)
            active = time.time()

    def _take_input(self, raw: RawInput) -> None:
        """Handle an input after the pointer moves sampled before it; moves sampled before
        it that arrive later are then dropped."""
        self._take_moves(raw.t)
        self._handle(raw)
        self._moves_after = max(self._moves_after, raw.t)

    def _take_moves(self, until: float) -> None:
        """Handle the pointer moves sampled up to ``until`` (one sampler: they come in order).
        A sample older than ``_moves_after`` arrived late and is dropped (an input carries its
        own position)."""
        moves = self._moves
        while moves and moves[0].t <= until:
            move = moves.popleft()
            if move.t >= self._moves_after:
                self._handle(move)

    def _drain(self) -> None:
        try:
            while True:
                try:
                    raw = self._q.get_nowait()
                except queue.Empty:
                    break
                self._take_input(raw)
            self._take_moves(float("inf"))
        except DisplayLost as exc:
            # Inputs still queued cannot be checked against the focused window: dropped.
            self._lost = self._lost or str(exc)

    def _finish(self) -> None:
        now = time.time()
        self._emit_held_move(force=True)
        for ev in self.typing.flush():
            self._emit(ev)
        self._close_gap(now)
        self._seal(now)
        self._retry_unsent()
        self._state = "stopped"
        self._write_status(now)
        self.windows.close()
        self._monitor_source.close()
        self.outbox.close()

    # -- gating ------------------------------------------------------------------------

    def _gate_state(self, t: float) -> str:
        st = self.gate.state(t)
        if st == RECORDING and self.gate.pause.paused and t >= self.gate.pause_since:
            return PAUSED
        return st

    def _open_gap(self, t: float) -> None:
        if self._gap_start is None:
            self._gap_start = t
            self._held_move = None
            self._dropped_buttons.clear()
            for ev in self.typing.flush():
                self._emit(ev)
            self.typing.drop()
            self.ring.clear()

    def _close_gap(self, t: float) -> None:
        if self._gap_start is not None:
            start, self._gap_start = self._gap_start, None
            self._add(Event(start, GAP, {"t_end": t}))
            self._clean_since = t
            self._moves_after = max(self._moves_after, t)

    def _observe(self, now: float, *, recheck: bool = True, input_ms: int | None = None) -> bool:
        """Take in focus and title changes; True when the focused window may be recorded.

        ``recheck`` asks the server which window has focus now (one round trip); otherwise
        only changes the window source has reported since the last call are looked at.
        ``now`` stamps what is found; for an input, the input's own time, so its events and
        the window they went to stay in order however late the input is handled. With
        ``input_ms`` (the input's server time), the server times of the focus changes say
        where the input went: all after it (the click that focuses a window) → the window
        focused before, and the changes wait for the next look; all before it → the window
        focused now; some before and some after → a window no longer known, so the input is
        not recorded (it may have gone to an excluded app).
        """
        w = self._win
        dirty = self.windows.changed()
        if recheck or dirty or self._deferred:
            handle = self.windows.focused()
            # A title change made before that reply arrives with it: look again. A change
            # left for later (it came after the input then handled) is still to be read.
            dirty = self.windows.changed() or dirty or self._deferred
        else:
            handle = w.handle
        self._focus_changes += self.windows.take_focus_changes()
        unknown = False
        if input_ms is not None and self._focus_changes and w.handle is not None:
            after = sum(_server_not_before(ms, input_ms) for ms in self._focus_changes)
            if after == len(self._focus_changes):
                self._deferred = True
                return not w.excluded
            unknown = after > 0
        self._deferred = False
        self._focus_changes = []
        now = max(now, self._observed_t)
        if handle != w.handle or dirty:
            info = self.windows.describe(handle) if handle else None
            changed = handle != w.handle or (
                info is not None and (w.info is None or info.title != w.info.title)
            )
            if changed:
                self._observed_t = now
                for ev in self.typing.flush():
                    self._emit(ev)
                w.handle, w.info = handle, info
                w.excluded = self.gate.excluded(info)
                self._moves_after = max(self._moves_after, now)
                if w.excluded:
                    self._open_gap(now)
                else:
                    self._close_gap(now)
                    if info is not None:
                        w.rid = self._rids.setdefault(info.handle, len(self._rids) + 1)
                        self._infos[w.rid] = info
                        self._focus_event(now, info)
        if not w.excluded and self._gap_start is not None:
            # Back from a pause or block: the gap ends with this observation.
            self._observed_t = now
            self._close_gap(now)
            if w.info is not None:
                self._focus_event(now, w.info)
        return not (w.excluded or unknown)

    def _focus_event(self, now: float, info: WindowInfo) -> None:
        if WINDOW_FOCUS not in self.manifest.kinds:
            return
        title, n = self.redaction.title(info.title)
        data: dict[str, Any] = {"window": self._win.rid, "redactions": n}
        if info.app is not None:
            data["app"] = info.app
        if title is not None:
            data["title"] = title
        if info.pid is not None:
            data["pid"] = info.pid
        if info.geometry is not None:
            data["geometry"] = list(info.geometry)
        self._attach_frame(now)
        self._add(Event(now, WINDOW_FOCUS, data))

    # -- the tick ----------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        self.gate.refresh(now)
        self._check_forget(now)
        st = self._gate_state(now)
        if st == NO_CONSENT:
            # Nothing at all, not even a gap; what was recorded with consent is sealed now.
            self._close_gap(now)
            self._held_move = None
            burst = self.typing.burst
            if burst is not None and burst.t_last < self.gate.consent_changed:
                for ev in self.typing.flush():
                    self._emit(ev)
            self.typing.drop()
            self.ring.clear()
            self._seal(now)
            self._state = NO_CONSENT
        elif st in (PAUSED, BLOCKED):
            self._open_gap(self.gate.pause_since if st == PAUSED else now)
            self._state = st
        else:
            # With inputs waiting, their own looks (at their times) take in a focus change;
            # stamped now, it would land after inputs made in the new window.
            allowed = (
                self._observe(now, recheck=False) if self._q.empty() else not self._win.excluded
            )
            self._state = RECORDING if allowed else EXCLUDED
            self._emit_held_move()
            for ev in self.typing.idle(now):
                self._emit(ev)
        self._retry_unsent()
        if self.batcher.due(now, typing_open=self.typing.burst is not None):
            self._seal(now)
        # The tray icon is up only while something is being recorded.
        shown = self._state == RECORDING
        if shown != self._shown:
            self.indicator.show(shown)
            self._shown = shown
        self.indicator_status = self.indicator.status
        if self._q.empty():
            # Inputs still to come are stamped after now; older grabs can't be asked for.
            self.ring.trim(now - RING_KEEP_S)

    # -- input -------------------------------------------------------------------------

    def _handle(self, raw: RawInput) -> None:
        st = self._gate_state(raw.t)
        if st != RECORDING:
            if st in (PAUSED, BLOCKED):
                self._open_gap(raw.t)
            return
        if raw.kind == MOVE:
            if self._win.excluded or self._gap_start is not None:
                return
            if raw.t - self._last_move_t >= self._move_period:
                self._held_move = None
                self._move(raw)
            else:
                self._held_move = raw
            return
        # A key inside a run: a title change made before it (an excluded site loaded in the
        # same window) applies to it. No round trip unless something changed; a change that
        # ends the run makes this key the first of the next one. Only where changes carry
        # server times: a source that cannot tell (no window manager) would answer every
        # key with a round trip, and the tick looks at it anyway.
        if (
            raw.kind == KEY_PRESS
            and self.typing.burst is not None
            and self.windows.times_focus_changes()
            and not self.typing.starts_burst(raw, self._win.rid)
            and not self._observe(raw.t, recheck=False, input_ms=raw.server_ms)
        ):
            return
        burst = raw.kind == KEY_PRESS and self.typing.starts_burst(raw, self._win.rid)
        key_action = raw.kind == KEY_PRESS and not burst and self.typing.starts_key_action(raw)
        if raw.kind in (BUTTON_DOWN, SCROLL) or burst or key_action:
            if not self._observe(raw.t, input_ms=raw.server_ms):
                if raw.kind == BUTTON_DOWN:
                    self._dropped_buttons.add(raw.button)
                return
        elif self._win.excluded or self._gap_start is not None:
            if raw.kind == BUTTON_DOWN:
                self._dropped_buttons.add(raw.button)
            return
        if raw.kind == BUTTON_DOWN:
            self._emit_held_move(force=True)
            for ev in self.typing.flush():
                self._emit(ev)
            self._attach_frame(raw.t, raw.server_ms)
            self._emit(Event(raw.t, POINTER_DOWN, {"x": raw.x, "y": raw.y, "button": raw.button}))
        elif raw.kind == BUTTON_UP:
            if raw.button in self._dropped_buttons:
                self._dropped_buttons.discard(raw.button)
                return
            self._emit_held_move(force=True)
            self._emit(Event(raw.t, POINTER_UP, {"x": raw.x, "y": raw.y, "button": raw.button}))
        elif raw.kind == SCROLL:
            self._emit_held_move(force=True)
            for ev in self.typing.flush():
                self._emit(ev)
            if raw.t - self._last_scroll_t > SCROLL_BURST_S:
                self._attach_frame(raw.t, raw.server_ms)
            self._last_scroll_t = raw.t
            self._emit(
                Event(raw.t, POINTER_SCROLL, {"x": raw.x, "y": raw.y, "dx": raw.dx, "dy": raw.dy})
            )
        elif raw.kind == KEY_PRESS:
            if key_action:
                # A special key or hotkey is a step of its own: its screen is the one after
                # the typing before it, so that run is closed ahead of the frame.
                for ev in self.typing.flush():
                    self._emit(ev)
            if burst:
                # The screen's word on the field is the one this run's own frame gives (a
                # frame kept for an earlier key showed the screen before that key).
                self._screen_focus.clear()
            if burst or key_action:
                self._attach_frame(raw.t, raw.server_ms)
                if self._win.excluded:
                    return  # focus moved to an excluded window while the frame was checked
            # Asked at the first key: sudo turns echo back on as soon as Enter is read.
            info = self._win.info
            secret = self.fields.password_state(info) if burst and info else None
            for ev in self.typing.press(raw, self._win.rid, password=secret):
                self._emit(ev)
        elif raw.kind == KEY_RELEASE:
            for ev in self.typing.release(raw):
                self._emit(ev)

    def _move(self, raw: RawInput) -> None:
        self._last_move_t = raw.t
        self._emit(Event(raw.t, POINTER_MOVE, {"x": raw.x, "y": raw.y}))

    def _emit_held_move(self, *, force: bool = False) -> None:
        held = self._held_move
        if held is not None and (force or time.time() - self._last_move_t >= self._move_period):
            self._held_move = None
            self._move(held)

    # -- events, frames and batches ----------------------------------------------------

    def _emit(self, ev: Event) -> None:
        if ev.kind == TEXT_TYPED:
            info = self._infos.get(int(ev.data.get("window", 0)))
            text, n = self.redaction.text(
                ev.data["text"],
                app=info.app if info else None,
                title=info.title if info else None,
                field=ev.data.get("field"),
                password_field=ev.data.pop(PASSWORD_RUN, None),
            )
            ev.data["text"] = text
            ev.data["redactions"] = n
        self._add(ev)

    def _add(self, ev: Event) -> None:
        if self.batcher.add(ev, time.time()):
            self.counts.events += 1

    def _attach_frame(self, t_action: float, input_ms: int | None = None) -> None:
        """Keep the last grab before ``t_action`` as this action's frame, if allowed."""
        if (
            self._stopping
            or not self.batcher.declares(SCREEN_FRAME)
            or not self.frame_rate.allows(t_action)
        ):
            return
        grab = self.ring.before(t_action)
        if grab is None or grab.t < self._clean_since:
            return
        # Focus again right before keeping: it may have moved to an excluded window.
        if not self._observe(time.time(), input_ms=input_ms):
            return
        blackout = [
            area
            for w in self.windows.visible()
            if (area := w.outer or w.geometry) is not None and self.gate.excluded(w)
        ]
        image: Image | None = None
        n = len(blackout)
        if self.redaction.reads_frames:
            result = self.redaction.frame(
                to_rgb(grab),
                window_key=str(self._win.rid),
                blackout=blackout,
                window=self._win.info,
            )
            if result is None:
                self.counts.dropped_frames += 1
                return
            image, n = result
        if self.batcher.frames_full():
            self._seal(time.time())
        index = len(self.batcher.frames)
        if image is not None:
            encoded = self.encoder.encode(image, index)
        else:
            encoded = self.encoder.encode_grab(grab, index, blackout)
        self.batcher.add_frame(encoded.image, time.time())
        data = {"frame": index, **encoded.data, "window": self._win.rid, "redactions": n}
        self._add(Event(max(grab.t, self._clean_since), SCREEN_FRAME, data))
        self.frame_rate.kept(t_action)
        self.counts.frames += 1

    def _seal(self, now: float) -> None:
        for ev in self.typing.flush():
            self._emit(ev)
        reopen = self._gap_start
        if reopen is not None:
            self._close_gap(now)
        if not self.batcher.empty():
            t0, t1 = self.batcher.span()
            with contextlib.suppress(SourceError):
                self.monitors = self._monitor_source.monitors()
            content = self.batcher.take(
                self.monitors, {"agent": "keystep", "platform": "x11", "codec": self.encoder.codec}
            )
            self.encoder.new_batch()
            self._unsent.append(_Unsent(content, t0, t1))
            self._retry_unsent()
        if reopen is not None:
            self._gap_start = now

    def _retry_unsent(self) -> None:
        while self._unsent:
            item = self._unsent[0]
            try:
                if item.sealed is None:
                    seq = self.outbox.reserve_seq()
                    batch_id, env = self.sealer.seal(item.content, seq=seq, t_start=item.t0)
                    item.sealed = (batch_id, seq, env)
                    item.content = None
                batch_id, seq, env = item.sealed
                self.outbox.put(batch_id, seq, item.t0, item.t1, env)
            except (SealError, OutboxError) as exc:
                msg = str(exc)
                if not self.errors or self.errors[-1] != msg:
                    self.errors.append(msg)
                return
            self._unsent.pop(0)
            self.counts.batches += 1
            if self.on_sealed is not None:
                self.on_sealed(batch_id)

    # -- forget and status -------------------------------------------------------------

    def _check_forget(self, now: float) -> None:
        try:
            st = os.stat(self._forget_path)
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._forget_stamp:
            return
        self._forget_stamp = stamp
        try:
            req = json.loads(Path(self._forget_path).read_bytes())
            t0, t1, rid = float(req["t0"]), float(req["t1"]), str(req["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if rid == self._forget_done:
            return
        # The batch in assembly is dropped whole, with the typing run and recent grabs.
        self.typing.drop()
        self.ring.clear()
        self._held_move = None
        self.batcher.drop()
        self.encoder.new_batch()
        self._unsent = [u for u in self._unsent if u.t1 < t0 or u.t0 > t1]
        try:
            self.outbox.forget(t0, t1)
        except OutboxError as exc:
            self.errors.append(str(exc))
            return
        self._clean_since = now
        self._add(Event(t0, GAP, {"t_end": now}))
        self._forget_done = rid
        self._write_status(now)

    def status(self, now: float) -> dict[str, Any]:
        pause = self.gate.pause if hasattr(self, "gate") else None
        return {
            "schema": STATUS_SCHEMA,
            "pid": os.getpid(),
            "display": self.display,
            "started": self.started,
            "updated": now,
            "state": self._state,
            "paused_until": pause.until if pause is not None and pause.paused else None,
            "blocked_by": self.gate.blocked_by() if hasattr(self, "gate") else [],
            "indicator": self.indicator_status,
            "counts": {
                "events": self.counts.events,
                "frames": self.counts.frames,
                "batches": self.counts.batches,
                "unsent": len(self._unsent),
            },
            "errors": self.errors[-3:],
            "screen_error": getattr(getattr(self, "ring", None), "error", None),
            "forget_done": self._forget_done,
        }

    def _write_status(self, now: float) -> None:
        # A full disk must not stop recording; the status file is advisory.
        with contextlib.suppress(OSError):
            write_status(self.home.recorder_status, self.status(now))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
