"""Fleet control shared by every collector process: the kill switch and its notices.

The halt state lives in the repository (``fleet_state``), the one place every collector
reads. A change and its PostgreSQL ``NOTIFY`` are one transaction: every other collector
hears of it the moment it commits (and of a rolled-back one never), with no second round
trip after the commit; this one pushes it to its own agents as soon as the commit returns.
A poll catches anything a dropped ``LISTEN`` connection missed. Each halt or resume bumps
a generation; leases carry it, and an agent refuses any lease older than a halt it has
seen. Manifest changes, consent withdrawals and revoked devices travel as notices on the
same channel.

A collector that loses the channel stops issuing leases (fail safe): its agents stop when
their leases run out; when it listens again, every stream re-reads its device's standing.

Fan-out is built for ten thousand streams per process: a change is offered to each
stream's mailbox in one pass (a future set, no task created, the frame encoded once by
the sender), and one renewal wheel per process paces every stream's lease renewals
instead of a timer per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from keystep.store.base import FleetState, Repository, Scope

log = logging.getLogger(__name__)

CHANNEL: Final = "keystep_fleet"
MESSAGE_VERSION: Final = 1
NOTICE_KINDS: Final = ("manifest", "consent-withdrawn", "device-revoked")
POLL_SECONDS: Final = 2.0
RENEWAL_TICK: Final = 0.25
_QUEUE_MAX: Final = 64


class FleetError(RuntimeError):
    """The fleet channel cannot be reached or carried something malformed."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Notice:
    """A control message for connected agents. ``subject`` is a manifest version, a
    contributor pseudonym or a device id, depending on ``kind``."""

    kind: str
    subject: str
    t: str = field(default_factory=lambda: _now().strftime("%Y-%m-%dT%H:%M:%SZ"))

    def __post_init__(self) -> None:
        if self.kind not in NOTICE_KINDS:
            raise FleetError(f"unknown notice kind {self.kind!r}")


Message = FleetState | Notice


def state_notification(state: FleetState) -> tuple[str, str]:
    """The ``NOTIFY`` that travels with a change of the kill switch: (channel, payload)."""
    return CHANNEL, encode(state)


def encode(msg: Message) -> str:
    if isinstance(msg, Notice):
        return json.dumps(
            {
                "v": MESSAGE_VERSION,
                "type": "notice",
                "kind": msg.kind,
                "subject": msg.subject,
                "t": msg.t,
            }
        )
    return json.dumps(
        {
            "v": MESSAGE_VERSION,
            "type": "state",
            "halted": msg.halted,
            "generation": msg.generation,
            "by": msg.changed_by,
            "t": msg.changed_at.isoformat() if msg.changed_at else None,
        }
    )


def decode(payload: str) -> Message:
    try:
        d = json.loads(payload)
        if d.get("v") != MESSAGE_VERSION:
            raise FleetError(f"unknown fleet message version {d.get('v')!r}")
        if d["type"] == "notice":
            return Notice(kind=str(d["kind"]), subject=str(d["subject"]), t=str(d["t"]))
        t = datetime.fromisoformat(d["t"]) if d.get("t") else None
        return FleetState(
            halted=bool(d["halted"]),
            generation=int(d["generation"]),
            changed_at=t,
            changed_by=d.get("by"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise FleetError(f"malformed fleet message: {exc}") from exc


class Listener:
    """One connected agent's mailbox: state changes and notices in order, plus a flag the
    renewal wheel raises when its lease is due. Waking it costs one future, no task."""

    __slots__ = (
        "_hub",
        "_pending",
        "_waiter",
        "closed",
        "device",
        "period_ticks",
        "pseudonym",
        "recheck",
        "renewal_due",
    )

    def __init__(self, hub: _Hub, *, device: str | None, pseudonym: str | None) -> None:
        self._hub = hub
        self._pending: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.device = device
        self.pseudonym = pseudonym
        self.period_ticks = 0
        self.recheck = False
        self.renewal_due = False

    def offer(self, msg: Message) -> None:
        if len(self._pending) >= _QUEUE_MAX:
            # A listener that does not drain is a dead connection; a state change must
            # still get through, so the oldest message goes rather than the newest.
            self._pending.popleft()
        self._pending.append(msg)
        self._wake()

    def renew(self) -> None:
        self.renewal_due = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self) -> None:
        """Until there is a message, a renewal is due, or the listener is closed."""
        if self._pending or self.renewal_due or self.closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def messages(self) -> list[Message]:
        out = list(self._pending)
        self._pending.clear()
        return out

    def take_renewal(self) -> bool:
        due, self.renewal_due = self.renewal_due, False
        return due

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.remove(self)
            self._wake()


class _Hub:
    """Every open stream of this process. A state change is offered to each (one pass, no
    encoding: the frame is built once by whoever sends it); a notice about one device or
    one contributor reaches only their streams."""

    def __init__(self, state: FleetState) -> None:
        self.state = state
        # Grows whenever the latest manifest may have changed (a notice, or notices missed):
        # what caches the manifest compares it.
        self.manifest_epoch = 0
        self.listeners: set[Listener] = set()
        self._by_device: dict[str, set[Listener]] = {}
        self._by_pseudonym: dict[str, set[Listener]] = {}

    def add(self, lst: Listener) -> None:
        self.listeners.add(lst)
        if lst.device is not None:
            self._by_device.setdefault(lst.device, set()).add(lst)
        if lst.pseudonym is not None:
            self._by_pseudonym.setdefault(lst.pseudonym, set()).add(lst)

    def remove(self, lst: Listener) -> None:
        self.listeners.discard(lst)
        for index, key in ((self._by_device, lst.device), (self._by_pseudonym, lst.pseudonym)):
            if key is not None and key in index:
                index[key].discard(lst)
                if not index[key]:
                    del index[key]

    def apply(self, state: FleetState) -> bool:
        """Adopt ``state`` if newer and tell every listener; False when already known."""
        if state.generation <= self.state.generation:
            return False
        self.state = state
        for lst in list(self.listeners):
            lst.offer(state)
        return True

    def notify(self, notice: Notice) -> None:
        if notice.kind == "device-revoked":
            targets = self._by_device.get(notice.subject, set())
        elif notice.kind == "consent-withdrawn":
            targets = self._by_pseudonym.get(notice.subject, set())
        else:
            self.manifest_epoch += 1
            targets = self.listeners
        for lst in list(targets):
            lst.offer(notice)

    def resync(self) -> None:
        """Notices may have been missed: every stream re-reads its standing at its next
        renewal (spread over one renewal period, not all at once)."""
        self.manifest_epoch += 1
        for lst in self.listeners:
            lst.recheck = True


class _RenewalWheel:
    """One timer for every stream of the process: each tick raises the renewal flag of the
    listeners due, instead of one timer (and one wake-up task) per connection."""

    def __init__(self, tick: float = RENEWAL_TICK) -> None:
        self._tick = tick
        self._slots: dict[int, list[Listener]] = {}
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    def _now(self) -> int:
        return int(asyncio.get_running_loop().time() / self._tick)

    def add(self, lst: Listener, period: float) -> None:
        # Never later than asked: a lease renewed late could lapse on a healthy device.
        lst.period_ticks = max(1, int(period / self._tick))
        now = self._now()
        if self._task is None or self._task.done():
            self._next = now + 1
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._slots.setdefault(now + lst.period_ticks, []).append(lst)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = self._now()
            while self._next <= now:
                slot = self._next
                for lst in self._slots.pop(slot, ()):
                    if not lst.closed:
                        lst.renew()
                        self._slots.setdefault(slot + lst.period_ticks, []).append(lst)
                self._next += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._slots.clear()


class FleetBus(ABC):
    """The kill switch as one collector process sees it."""

    # How a change of the kill switch reaches the other collectors: a NOTIFY committed with
    # it, or nothing when there are none.
    _notification: Callable[[FleetState], tuple[str, str]] | None = None

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._hub = _Hub(FleetState(halted=False, generation=0, changed_at=None))
        self._switch_thread = ThreadPoolExecutor(1, thread_name_prefix="keystep-switch")
        self._wheel = _RenewalWheel()

    @property
    def state(self) -> FleetState:
        return self._hub.state

    @property
    def manifest_epoch(self) -> int:
        """Changes whenever the latest manifest may have: a cache of it compares this."""
        return self._hub.manifest_epoch

    @property
    @abstractmethod
    def healthy(self) -> bool:
        """In touch with the shared state? If not, issue no lease."""

    def may_issue(self) -> bool:
        return self.healthy and not self._hub.state.halted

    def listen(
        self,
        *,
        renew_every: float | None = None,
        device: str | None = None,
        pseudonym: str | None = None,
    ) -> Listener:
        """A mailbox for one stream. ``renew_every``: raise its renewal flag that often;
        ``device`` and ``pseudonym``: the notices about them that it receives."""
        lst = Listener(self._hub, device=device, pseudonym=pseudonym)
        self._hub.add(lst)
        if renew_every is not None:
            self._wheel.add(lst, renew_every)
        return lst

    @property
    def listener_count(self) -> int:
        return len(self._hub.listeners)

    async def start(self) -> None:
        await self.sync()

    async def sync(self) -> None:
        """Re-read the state from the repository."""
        self._hub.apply(await asyncio.to_thread(self._repo.fleet_state))

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _announce(self, msg: Message) -> None:
        """Deliver ``msg`` to every collector's hub (this one's included)."""

    async def set_halted(self, halted: bool, *, by: str) -> FleetState:
        # Its own thread: the kill switch never queues behind routine repository reads. The
        # other collectors hear of the change by the NOTIFY that commits with it.
        state = await asyncio.get_running_loop().run_in_executor(
            self._switch_thread,
            functools.partial(
                self._repo.set_fleet_halted,
                halted,
                at=_now(),
                by=by,
                scope=Scope.steward(),
                notify=self._notification,
            ),
        )
        self._hub.apply(state)
        return state

    async def publish(self, notice: Notice) -> None:
        await self._announce(notice)


class LocalFleetBus(FleetBus):
    """One collector process (the embedded deployment or SQLite)."""

    @property
    def healthy(self) -> bool:
        return True

    async def close(self) -> None:
        await self._wheel.close()
        self._switch_thread.shutdown(wait=False)

    async def _announce(self, msg: Message) -> None:
        if isinstance(msg, Notice):
            self._hub.notify(msg)
        else:
            self._hub.apply(msg)


class PostgresFleetBus(FleetBus):
    """Several collectors on one PostgreSQL database: ``LISTEN``/``NOTIFY`` plus a poll."""

    _notification = staticmethod(state_notification)

    def __init__(self, repo: Repository, dsn: str) -> None:
        super().__init__(repo)
        self._dsn = dsn
        self._listening = False
        self._synced = False
        self._tasks: list[asyncio.Task[None]] = []
        self._send: Any = None
        self._send_lock = asyncio.Lock()

    @property
    def healthy(self) -> bool:
        return self._listening and self._synced

    async def start(self) -> None:
        ready = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._listen(ready)))
        self._tasks.append(asyncio.create_task(self._poll()))
        try:
            await asyncio.wait_for(ready, timeout=10)
        except TimeoutError as exc:
            raise FleetError("cannot LISTEN on the fleet channel") from exc

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        import psycopg

        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening = True
                    # Anything announced while we were not listening: read it now.
                    await self._safe_sync()
                    if not first:
                        self._hub.resync()
                    first = False
                    if not ready.done():
                        ready.set_result(None)
                    async for n in conn.notifies():
                        self._deliver(n.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fleet LISTEN connection lost: %s", exc)
            self._listening = False
            await asyncio.sleep(0.5)

    def _deliver(self, payload: str) -> None:
        try:
            msg = decode(payload)
        except FleetError as exc:
            log.warning("ignoring fleet message: %s", exc)
            return
        if isinstance(msg, Notice):
            self._hub.notify(msg)
        else:
            self._hub.apply(msg)

    async def _safe_sync(self) -> None:
        try:
            await self.sync()
            self._synced = True
        except Exception as exc:
            self._synced = False
            log.warning("fleet state unreadable: %s", exc)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await self._safe_sync()

    async def _announce(self, msg: Message) -> None:
        import psycopg

        async with self._send_lock:
            for attempt in range(2):
                try:
                    if self._send is None or self._send.closed:
                        self._send = await psycopg.AsyncConnection.connect(
                            self._dsn, autocommit=True
                        )
                    await self._send.execute("SELECT pg_notify(%s, %s)", (CHANNEL, encode(msg)))
                    return
                except psycopg.OperationalError as exc:
                    self._send = None
                    if attempt:
                        raise FleetError(f"cannot announce on the fleet channel: {exc}") from exc

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._send is not None:
            await self._send.close()
        self._listening = False
        await self._wheel.close()
        self._switch_thread.shutdown(wait=False)


def open_fleet_bus(repo: Repository, db_url: str) -> FleetBus:
    """PostgreSQL databases share the state across collectors; anything else is local."""
    if db_url.startswith(("postgresql", "postgres:")):
        dsn = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        return PostgresFleetBus(repo, dsn)
    return LocalFleetBus(repo)
