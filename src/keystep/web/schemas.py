"""Request and response models, one family per entity (``*Create``/``*Public``)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Text = Annotated[str, Field(min_length=1, max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorPublic(_Model):
    detail: str


class EnrollmentCodeCreate(_Model):
    contributor_id: Text
    ttl_hours: float = Field(default=72.0, gt=0, le=720)


class EnrollmentCodePublic(_Model):
    code: str
    expires_at: datetime
    pseudonym: str


class DeviceEnroll(_Model):
    code: Annotated[str, Field(min_length=1, max_length=64)]
    contributor_id: Annotated[
        str | None,
        Field(
            default=None,
            min_length=1,
            max_length=200,
            description="the id the code was issued for; needed to read your own data later",
        ),
    ] = None
    public_key: Annotated[
        str, Field(min_length=1, max_length=100, description="raw Ed25519 public key, base64")
    ]

    @field_validator("public_key")
    @classmethod
    def _key(cls, v: str) -> str:
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("public_key is not base64") from exc
        if len(raw) != 32:
            raise ValueError("public_key is not 32 bytes")
        return v

    def key_bytes(self) -> bytes:
        return base64.b64decode(self.public_key)


class SealingKeyPublic(_Model):
    key_id: str
    public_key: str
    pseudonym: str
    period: str


class DeviceCredentialPublic(_Model):
    """Shown once: the collector keeps only hashes."""

    device_id: str
    credential: str
    contributor_token: str
    pseudonym: str
    lease_public_key: str
    sealing_keys: list[SealingKeyPublic]
    manifest_version: int | None


class BatchAck(_Model):
    batch_id: str
    sha256: str
    size: int
    duplicate: bool


class BatchPublic(_Model):
    """A batch's clear metadata (what a contributor sees of their own uploads)."""

    batch_id: str
    device: str
    seq: int
    period: str
    t_hour: str
    manifest_version: int
    kinds: list[str]
    size: int
    received_at: datetime


class LeasePublic(_Model):
    lease: str
    generation: int
    ttl_s: float


class FleetChange(_Model):
    reason: Annotated[str, Field(default="", max_length=500)] = ""


class FleetStatePublic(_Model):
    halted: bool
    generation: int
    changed_at: datetime | None
    changed_by: str | None


class ManifestPublic(_Model):
    version: int
    digest: str
    yaml: str
    published_at: datetime


class ManifestPublish(_Model):
    yaml: Annotated[str, Field(min_length=1, max_length=256 * 1024)]


class ConsentGive(_Model):
    manifest_version: int = Field(ge=1)
    manifest_digest: Annotated[str, Field(min_length=1, max_length=128)]


class ConsentPublic(_Model):
    manifest_version: int
    manifest_digest: str
    given_at: datetime
    withdrawn_at: datetime | None


class ExportedBatch(_Model):
    batch_id: str
    t_hour: str | None = None
    events: list[dict[str, object]] | None = None
    error: str | None = None


# Batch ids are UUIDv7 (DESIGN.md, envelope header); anything else names no batch.
BatchId = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


class ForgetRequest(_Model):
    """Either the last ``last_seconds`` of recording, or the named batches (a device's
    ``keystep forget`` knows which of its uploaded batches overlap the window)."""

    last_seconds: int | None = Field(default=None, gt=0, le=366 * 24 * 3600)
    batch_ids: list[BatchId] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_of(self) -> ForgetRequest:
        if (self.last_seconds is None) == (self.batch_ids is None):
            raise ValueError("give exactly one of last_seconds and batch_ids")
        return self


class EraseRequest(_Model):
    contributor: Annotated[str | None, Field(default=None, max_length=200)] = None


class Count(_Model):
    count: int


class HealthPublic(_Model):
    status: str
    fleet: str
    halted: bool
