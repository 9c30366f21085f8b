"""Prometheus metrics of one collector process: aggregates only (DESIGN.md principle 9).

No series carries a device, contributor, batch or IP: the only label is a reason taken
from a fixed set. A test scrapes the endpoint after real traffic and checks that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

REASONS: Final = (
    "invalid",
    "unauthenticated",
    "forbidden",
    "conflict",
    "too-large",
    "content-type",
    "bad-credential",
    "revoked",
    "enrollment-code",
    "other",
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._counters: dict[str, Counter] = {
            "batches_accepted": Counter(
                "keystep_batches_accepted", "batches stored or acknowledged again", registry=r
            ),
            "bytes_accepted": Counter(
                "keystep_bytes_accepted", "envelope bytes accepted", registry=r
            ),
            "leases_issued": Counter("keystep_leases_issued", "leases signed", registry=r),
            "enrollments": Counter("keystep_enrollments", "devices enrolled", registry=r),
        }
        self._by_reason: dict[str, Counter] = {
            "batches_rejected": Counter(
                "keystep_batches_rejected", "uploads refused", ["reason"], registry=r
            ),
            "auth_failures": Counter(
                "keystep_auth_failures", "credentials refused", ["reason"], registry=r
            ),
        }
        self.streams = Gauge("keystep_lease_streams", "open lease streams", registry=r)
        self.halted = Gauge("keystep_fleet_halted", "1 while the fleet is halted", registry=r)
        self.generation = Gauge("keystep_fleet_generation", "fleet state generation", registry=r)

    def count(self, name: str, *, reason: str | None = None, n: str = "1") -> None:
        if name in self._by_reason:
            self._by_reason[name].labels(reason if reason in REASONS else "other").inc()
        else:
            self._counters[name].inc(float(n))

    def render(self, *, streams: Callable[[], int], halted: bool, generation: int) -> bytes:
        self.streams.set(streams())
        self.halted.set(1 if halted else 0)
        self.generation.set(generation)
        return generate_latest(self.registry)
