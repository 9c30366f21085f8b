"""One collector's fan-out: a state change reaches every open stream in one pass, notices
reach only the streams they concern, and one renewal wheel paces every stream's leases."""

from __future__ import annotations

import asyncio
from pathlib import Path

from keystep.collector.fleet import LocalFleetBus, Notice
from keystep.store.base import FleetState
from keystep.store.factory import open_repository


def _bus(tmp_path: Path) -> LocalFleetBus:
    return LocalFleetBus(open_repository(f"sqlite:///{tmp_path / 'c.sqlite'}"))


def test_a_halt_reaches_every_stream_and_notices_only_theirs(tmp_path: Path) -> None:
    async def run() -> None:
        bus = _bus(tmp_path)
        await bus.start()
        streams = [bus.listen(device=f"d{i}", pseudonym=f"p{i // 10}") for i in range(2000)]
        state = await bus.set_halted(True, by="steward-1")
        await bus.publish(Notice("device-revoked", "d7"))
        await bus.publish(Notice("consent-withdrawn", "p3"))
        await bus.publish(Notice("manifest", "2"))
        for i, s in enumerate(streams):
            await s.wait()  # returns at once: something is pending
            got = s.messages()
            assert got[0] == state and got[0].halted
            kinds = [m.kind for m in got[1:] if isinstance(m, Notice)]
            expected = (["device-revoked"] if i == 7 else []) + (
                ["consent-withdrawn"] if i // 10 == 3 else []
            )
            assert kinds == [*expected, "manifest"]
        # An older or repeated state is not offered again.
        await bus._announce(FleetState(halted=False, generation=state.generation, changed_at=None))
        assert all(not s.messages() for s in streams)
        for s in streams:
            s.close()
        assert bus.listener_count == 0
        await bus.close()

    asyncio.run(run())


def test_one_wheel_paces_every_stream_and_forgets_closed_ones(tmp_path: Path) -> None:
    async def run() -> None:
        bus = _bus(tmp_path)
        await bus.start()
        streams = [bus.listen(renew_every=0.5) for _ in range(500)]
        renewals = [0] * len(streams)
        closed = streams[0]
        closed.close()
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.7
        while loop.time() < end:
            await asyncio.sleep(0.05)
            for i, s in enumerate(streams):
                renewals[i] += s.take_renewal()
        # Due every 0.5 s, never later (the wheel rounds the period down to its tick).
        assert all(3 <= r <= 4 for r in renewals[1:]), sorted(set(renewals[1:]))
        assert renewals[0] == 0
        # A closed stream wakes at once, so its writer can leave.
        await asyncio.wait_for(closed.wait(), timeout=1)
        await bus.close()

    asyncio.run(run())
