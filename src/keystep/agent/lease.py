"""The device's recording lease: held, renewed over a long-lived stream, dropped on a halt.

Validity is timed on ``time.monotonic()`` from the moment a lease arrives, never on the
wall clock: a device clock hours off changes nothing, and a suspended or cut-off device
stops at most one TTL after its last lease. ``may_record`` is what the capture gate asks
(``Gate.add_condition("lease", holder.may_record)``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import httpx

from keystep.agent.status import LeaseState
from keystep.collector.leases import Lease, LeaseError, verify_lease

log = logging.getLogger(__name__)

STREAM_PATH: Final = "/v1/lease/stream"


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


def parse_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Server-sent events (the subset the collector writes: ``event:`` and ``data:``)."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


class LeaseHolder:
    """Thread-safe lease state. ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(
        self,
        *,
        device_id: str,
        public_key: bytes,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self._public_key = public_key
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._valid_until: float | None = None
        self._halted_generation = -1
        self._halted = False
        self._lease: Lease | None = None
        self.reason = "no lease yet"

    def accept(self, token: str) -> Lease:
        """Adopt a lease; refused when forged, for another device, or older than a halt."""
        received = self._clock()
        lease = verify_lease(token, self._public_key, device=self.device_id)
        with self._lock:
            if lease.generation <= self._halted_generation:
                raise LeaseError(
                    f"lease generation {lease.generation} predates the halt at "
                    f"generation {self._halted_generation}"
                )
            self._lease = lease
            self._valid_until = received + lease.ttl_s
            self._halted = False
            self.reason = "leased"
        self._changed(True)
        return lease

    def halt(self, generation: int, reason: str = "fleet halted") -> None:
        with self._lock:
            self._halted_generation = max(self._halted_generation, generation)
            self._valid_until = None
            self._halted = True
            self.reason = reason
        self._changed(False)

    def drop(self, reason: str) -> None:
        with self._lock:
            self._valid_until = None
            self.reason = reason
        self._changed(False)

    def may_record(self) -> bool:
        with self._lock:
            return self._valid_until is not None and self._clock() < self._valid_until

    def remaining(self) -> float:
        with self._lock:
            if self._valid_until is None:
                return 0.0
            return max(0.0, self._valid_until - self._clock())

    def state(self) -> tuple[LeaseState, float, str]:
        """``(held | expired | halted | none, seconds left, reason)`` for the status file."""
        with self._lock:
            left = 0.0 if self._valid_until is None else self._valid_until - self._clock()
            if self._halted:
                return "halted", 0.0, self.reason
            if left > 0:
                return "held", left, self.reason
            if self._lease is None:
                return "none", 0.0, self.reason
            return "expired", 0.0, self.reason if self._valid_until is None else "lease ran out"

    @property
    def lease(self) -> Lease | None:
        return self._lease

    def _changed(self, ok: bool) -> None:
        if self._on_change is not None:
            self._on_change(ok)


class LeaseStream:
    """Keeps the long-lived connection to the collector open and feeds a LeaseHolder.

    ``on_manifest`` is called with the new manifest version when a steward publishes one.
    """

    def __init__(
        self,
        server: str,
        credential: str,
        holder: LeaseHolder,
        *,
        on_manifest: Callable[[int], None] | None = None,
        read_timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._server = server.rstrip("/")
        self._credential = credential
        self._holder = holder
        self._on_manifest = on_manifest
        self._read_timeout = read_timeout
        self._transport = transport
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keystep-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._stream_once()
                delay = 0.5
            except (httpx.HTTPError, OSError) as exc:
                log.info("lease stream interrupted: %s", exc)
            self.connected.clear()
            # Full jitter: thousands of agents reconnecting after a collector restart must
            # not arrive in lockstep.
            self._stop.wait(random.uniform(0, delay))
            delay = min(delay * 2, 30.0)

    def _stream_once(self) -> None:
        timeout = httpx.Timeout(10.0, read=self._read_timeout)
        headers = {"Authorization": f"Bearer {self._credential}", "Accept": "text/event-stream"}
        with (
            httpx.Client(
                base_url=self._server, timeout=timeout, transport=self._transport
            ) as client,
            client.stream("GET", STREAM_PATH, headers=headers) as resp,
        ):
            if resp.status_code in (401, 403):
                self._holder.drop(f"the collector refused this device ({resp.status_code})")
                # A revoked device stays stopped; retrying slowly costs nothing.
                self._stop.wait(30)
                return
            resp.raise_for_status()
            self.connected.set()
            for ev in parse_sse(resp.iter_lines()):
                if self._stop.is_set():
                    return
                self.handle(ev)

    def handle(self, ev: SseEvent) -> None:
        if ev.event == "lease":
            try:
                self._holder.accept(json.loads(ev.data)["lease"])
            except (LeaseError, KeyError, ValueError) as exc:
                log.warning("refused a lease: %s", exc)
        elif ev.event == "halt":
            self._holder.halt(int(json.loads(ev.data)["generation"]))
        elif ev.event in ("consent-withdrawn", "device-revoked"):
            self._holder.drop(ev.event)
        elif ev.event == "manifest" and self._on_manifest is not None:
            self._on_manifest(int(json.loads(ev.data)["version"]))
