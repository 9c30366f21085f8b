"""Enrollment: a steward's one-time code becomes a device credential; stewards revoke."""

from __future__ import annotations

import base64
from datetime import timedelta

from fastapi import APIRouter

from keystep.collector import service
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import (
    DeviceCredentialPublic,
    DeviceEnroll,
    EnrollmentCodeCreate,
    EnrollmentCodePublic,
    SealingKeyPublic,
)

router = APIRouter(prefix="/v1", tags=["enrollment"])


def _key(k: dict[str, object]) -> SealingKeyPublic:
    pk = k["public_key"]
    assert isinstance(pk, bytes)
    return SealingKeyPublic(
        key_id=str(k["key_id"]),
        public_key=base64.b64encode(pk).decode(),
        pseudonym=str(k["pseudonym"]),
        period=str(k["period"]),
    )


@router.post("/enrollment-codes", status_code=201)
def create_code(
    c: CollectorDep, caller: CallerDep, body: EnrollmentCodeCreate
) -> EnrollmentCodePublic:
    code, expires, pseudonym = service.create_enrollment_code(
        c, caller=caller, contributor_id=body.contributor_id, ttl=timedelta(hours=body.ttl_hours)
    )
    return EnrollmentCodePublic(code=code, expires_at=expires, pseudonym=pseudonym)


@router.post("/devices", status_code=201)
def enroll(c: CollectorDep, body: DeviceEnroll) -> DeviceCredentialPublic:
    """The one-time code in the body is the authentication."""
    e = service.enroll_device(
        c, code=body.code, public_key=body.key_bytes(), contributor_id=body.contributor_id
    )
    return DeviceCredentialPublic(
        device_id=e.device_id,
        credential=e.credential,
        contributor_token=e.contributor_token,
        pseudonym=e.pseudonym,
        lease_public_key=base64.b64encode(e.lease_public_key).decode(),
        sealing_keys=[_key(k) for k in e.sealing_keys],
        manifest_version=e.manifest_version,
    )


@router.get("/devices/me/sealing-key")
def sealing_key(c: CollectorDep, caller: CallerDep, period: str) -> SealingKeyPublic:
    return _key(service.sealing_keys(c, caller=caller, period=period))


@router.post("/devices/{device_id}/revoke", status_code=204)
async def revoke(c: CollectorDep, caller: CallerDep, device_id: str) -> None:
    await service.revoke_device(c, caller=caller, device_id=device_id)
