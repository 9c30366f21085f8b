"""Fleet control shared by every collector process: the kill switch and its notices.

The halt state lives in the repository (``fleet_state``), the one place every collector
reads. A change is written there first, then announced on PostgreSQL ``NOTIFY`` so every
collector — this one included — pushes it to its connected agents at once; a poll catches
anything a dropped ``LISTEN`` connection missed. Each halt or resume bumps a generation;
leases carry it, and an agent refuses any lease older than a halt it has seen. Manifest
changes, consent withdrawals and revoked devices travel as notices on the same channel.

A collector that loses the channel stops issuing leases (fail safe): its agents stop when
their leases run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from abc import ABC, abstractmethod
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
    """One connected agent's view: state changes and notices, in order."""

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=_QUEUE_MAX)

    def offer(self, msg: Message) -> None:
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            # A listener that does not drain is a dead connection; a state change must
            # still get through, so the oldest message goes rather than the newest.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(msg)

    async def get(self) -> Message:
        return await self.queue.get()

    def close(self) -> None:
        self._hub.listeners.discard(self)


class _Hub:
    def __init__(self, state: FleetState) -> None:
        self.state = state
        self.listeners: set[Listener] = set()

    def apply(self, state: FleetState) -> bool:
        """Adopt ``state`` if newer and tell every listener; False when already known."""
        if state.generation <= self.state.generation:
            return False
        self.state = state
        for lst in list(self.listeners):
            lst.offer(state)
        return True

    def notify(self, notice: Notice) -> None:
        for lst in list(self.listeners):
            lst.offer(notice)


class FleetBus(ABC):
    """The kill switch as one collector process sees it."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._hub = _Hub(FleetState(halted=False, generation=0, changed_at=None))
        self._switch_thread = ThreadPoolExecutor(1, thread_name_prefix="keystep-switch")

    @property
    def state(self) -> FleetState:
        return self._hub.state

    @property
    @abstractmethod
    def healthy(self) -> bool:
        """In touch with the shared state? If not, issue no lease."""

    def may_issue(self) -> bool:
        return self.healthy and not self._hub.state.halted

    def listen(self) -> Listener:
        lst = Listener(self._hub)
        self._hub.listeners.add(lst)
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
        # Its own thread: the kill switch never queues behind routine repository reads.
        state = await asyncio.get_running_loop().run_in_executor(
            self._switch_thread,
            functools.partial(
                self._repo.set_fleet_halted, halted, at=_now(), by=by, scope=Scope.steward()
            ),
        )
        self._hub.apply(state)
        await self._announce(state)
        return state

    async def publish(self, notice: Notice) -> None:
        await self._announce(notice)


class LocalFleetBus(FleetBus):
    """One collector process (the embedded deployment or SQLite)."""

    @property
    def healthy(self) -> bool:
        return True

    async def close(self) -> None:
        self._switch_thread.shutdown(wait=False)

    async def _announce(self, msg: Message) -> None:
        if isinstance(msg, Notice):
            self._hub.notify(msg)
        else:
            self._hub.apply(msg)


class PostgresFleetBus(FleetBus):
    """Several collectors on one PostgreSQL database: ``LISTEN``/``NOTIFY`` plus a poll."""

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

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening = True
                    # Anything announced while we were not listening: read it now.
                    await self._safe_sync()
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
        self._switch_thread.shutdown(wait=False)


def open_fleet_bus(repo: Repository, db_url: str) -> FleetBus:
    """PostgreSQL databases share the state across collectors; anything else is local."""
    if db_url.startswith(("postgresql", "postgres:")):
        dsn = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        return PostgresFleetBus(repo, dsn)
    return LocalFleetBus(repo)
