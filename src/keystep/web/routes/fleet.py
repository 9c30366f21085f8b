"""The fleet kill switch (steward, audited) and its state."""

from __future__ import annotations

from fastapi import APIRouter

from keystep.collector import service
from keystep.store.base import FleetState
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import FleetChange, FleetStatePublic

router = APIRouter(prefix="/v1/fleet", tags=["fleet"])


def _public(s: FleetState) -> FleetStatePublic:
    return FleetStatePublic(
        halted=s.halted, generation=s.generation, changed_at=s.changed_at, changed_by=s.changed_by
    )


@router.get("")
def state(c: CollectorDep, caller: CallerDep) -> FleetStatePublic:
    service.require(caller, "steward", "operator", "auditor")
    return _public(c.fleet.state)


@router.post("/halt")
async def halt(c: CollectorDep, caller: CallerDep, body: FleetChange) -> FleetStatePublic:
    return _public(await service.set_halted(c, caller=caller, halted=True, reason=body.reason))


@router.post("/resume")
async def resume(c: CollectorDep, caller: CallerDep, body: FleetChange) -> FleetStatePublic:
    return _public(await service.set_halted(c, caller=caller, halted=False, reason=body.reason))
