"""The agent's lease: timed on the monotonic clock from receipt, never the wall clock;
refused when forged, for another device, or older than a halt already seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keystep.agent.lease import LeaseHolder, SseEvent, parse_sse
from keystep.collector.leases import LeaseError, LeaseSigner


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _holder(signer: LeaseSigner, clock: Clock) -> LeaseHolder:
    return LeaseHolder(device_id="d1", public_key=signer.public_key, clock=clock)


@pytest.mark.parametrize("wall_offset_hours", [-30, -3, 0, 3, 30])
def test_validity_is_ttl_from_receipt_whatever_the_wall_clock_says(wall_offset_hours: int) -> None:
    signer, clock = LeaseSigner.generate(), Clock()
    holder = _holder(signer, clock)
    issued = datetime.now(UTC) + timedelta(hours=wall_offset_hours)
    holder.accept(signer.issue(device="d1", generation=1, ttl_s=3.0, now=issued))
    clock.t += 2.99
    assert holder.may_record()
    clock.t += 0.02
    assert not holder.may_record()


def test_halt_stops_at_once_and_refuses_older_leases() -> None:
    signer, clock = LeaseSigner.generate(), Clock()
    holder = _holder(signer, clock)
    holder.accept(signer.issue(device="d1", generation=4))
    holder.halt(5)
    assert not holder.may_record()
    for gen in (4, 5):  # from a collector that has not heard of the halt yet
        with pytest.raises(LeaseError, match="predates the halt"):
            holder.accept(signer.issue(device="d1", generation=gen))
    holder.accept(signer.issue(device="d1", generation=6))  # after a resume
    assert holder.may_record()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda s, o: o.issue(device="d1", generation=1), "signature"),
        (lambda s, o: s.issue(device="d2", generation=1), "another device"),
        (lambda s, o: s.issue(device="d1", generation=1)[:-4] + "AAAA", "signature"),
        (lambda s, o: "garbage", "payload.signature"),
    ],
    ids=["other collector key", "other device", "tampered", "garbage"],
)
def test_bad_leases_are_refused(make, message: str) -> None:  # type: ignore[no-untyped-def]
    signer, other, clock = LeaseSigner.generate(), LeaseSigner.generate(), Clock()
    holder = _holder(signer, clock)
    with pytest.raises(LeaseError, match=message):
        holder.accept(make(signer, other))
    assert not holder.may_record()


def test_collector_refuses_to_sign_an_unbounded_lease() -> None:
    with pytest.raises(LeaseError):
        LeaseSigner.generate().issue(device="d1", generation=1, ttl_s=3600)


def test_sse_parser_reads_what_the_collector_writes() -> None:
    lines = [
        ": waiting",
        "",
        "event: lease",
        'data: {"lease": "x"}',
        "",
        "event: halt",
        'data: {"generation": 3}',
        "",
    ]
    assert list(parse_sse(iter(lines))) == [
        SseEvent("lease", '{"lease": "x"}'),
        SseEvent("halt", '{"generation": 3}'),
    ]
