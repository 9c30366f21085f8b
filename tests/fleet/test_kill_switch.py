"""The kill switch: a halt on one collector stops devices on another; cut-off devices stop
when their lease runs out; a resume restores leases."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from harness import CollectorProc, enroll_sim

from keystep.agent.lease import LeaseHolder, LeaseStream

pytestmark = pytest.mark.postgres


def _holder(c: CollectorProc, dev: object) -> tuple[LeaseHolder, LeaseStream]:
    holder = LeaseHolder(device_id=dev.device_id, public_key=dev.lease_public_key)  # type: ignore[attr-defined]
    stream = LeaseStream(c.url, dev.credential, holder, read_timeout=30)  # type: ignore[attr-defined]
    stream.start()
    return holder, stream


def _wait(pred: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout} s")


def test_halt_on_one_collector_stops_devices_on_the_other(
    collectors: Callable[..., CollectorProc],
) -> None:
    a = collectors("a", lease_ttl=3.0)
    b = collectors("b", lease_ttl=3.0)
    devs = [enroll_sim(a, f"person{i}") for i in range(4)]
    held = [_holder(b if i % 2 else a, d) for i, d in enumerate(devs)]
    try:
        for h, _ in held:
            _wait(h.may_record, 10)
        # The CLI, as a steward would: pulled on collector a.
        t0 = time.monotonic()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "keystep.cli.main",
                "fleet",
                "halt",
                "--server",
                a.url,
                "--token",
                "steward-token-0123456789abcdef",
                "--reason",
                "test",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        for h, _ in held:
            _wait(lambda h=h: not h.may_record(), 2.0)
        assert time.monotonic() - t0 < 2.5
        # Neither collector leases while halted (423), and the devices stay stopped.
        for d in devs[:2]:  # one on each collector
            with d.http() as http:
                r = http.post("/v1/lease")
            assert r.status_code == 423, r.text
        time.sleep(1.5)
        assert not any(h.may_record() for h, _ in held)
        with b.staff() as s:
            r = s.post("/v1/fleet/resume", json={"reason": "over"})
            assert r.status_code == 200 and r.json()["halted"] is False
        for h, _ in held:
            _wait(h.may_record, 3.0)
    finally:
        for _, s in held:
            s.stop()


def test_cut_off_device_stops_within_the_lease_ttl(
    collectors: Callable[..., CollectorProc],
) -> None:
    ttl = 3.0
    c = collectors("solo", lease_ttl=ttl)
    dev = enroll_sim(c, "cutoff")
    holder, stream = _holder(c, dev)
    try:
        _wait(holder.may_record, 10)
        # The collector freezes: no halt can reach the device, only the TTL stops it.
        c.kill(signal.SIGSTOP)
        t0 = time.monotonic()
        stopped_after = _wait(lambda: not holder.may_record(), ttl + 1.0)
        assert stopped_after <= ttl + 0.1
        assert time.monotonic() - t0 <= ttl + 1.0
    finally:
        c.kill(signal.SIGCONT)
        stream.stop()


def test_non_steward_cannot_pull_the_kill_switch(collectors: Callable[..., CollectorProc]) -> None:
    c = collectors("roles")
    dev = enroll_sim(c, "someone")
    for client in (
        c.staff("operator"),
        c.staff("auditor"),
        dev.http(),
        dev.http(dev.contributor_token),
    ):
        with client:
            r = client.post("/v1/fleet/halt", json={"reason": "x"})
        assert r.status_code == 403, r.text
    with c.staff("auditor") as s:
        assert s.get("/v1/fleet").json()["halted"] is False
