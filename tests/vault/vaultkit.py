"""Helpers for the vault tests: a controlled clock, enrolled devices, a sealer, fixtures."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uuid6
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystep.model.batch import BatchContent, Monitor, encode_content
from keystep.model.events import Event
from keystep.policy.model import Principal
from keystep.seal.envelope import seal_batch
from keystep.vault.base import Vault
from keystep.vault.local import LocalVault
from keystep.vault.remote import RemoteVault
from keystep.vault.server import VaultServer

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
STEWARD_A = Principal("alice", "steward")
STEWARD_B = Principal("bob", "steward")
BUILDER = Principal("builder", "builder")


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Device:
    device_id: str
    key: Ed25519PrivateKey
    contributor_id: str
    pseudonym: str
    seq: int = 0
    sealed: list[bytes] = field(default_factory=list)

    @property
    def public(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )


def content(text: str = "hello vault", n: int = 3) -> BatchContent:
    events = [
        Event(1_700_000_000.0 + i, "pointer.down", {"x": i, "y": 2 * i, "button": "left"})
        for i in range(n)
    ]
    events.append(Event(1_700_000_010.0, "text.typed", {"text": text, "t_end": 1_700_000_011.0}))
    return BatchContent(
        events=events, frames=[b"\x89PNG-fake"], monitors=[Monitor(0, 0, 1280, 800, True)]
    )


def seal_for(
    vault: Vault,
    dev: Device,
    body: BatchContent | None = None,
    *,
    period: str | None = None,
    signer: Ed25519PrivateKey | None = None,
) -> bytes:
    clock = getattr(vault, "clock", None)
    period = period or (clock() if clock else T0).strftime("%Y-%m")
    sk = vault.sealing_key(dev.pseudonym, period)
    dev.seq += 1
    blob = seal_batch(
        encode_content(body or content()),
        batch_id=str(uuid6.uuid7()),
        device=dev.device_id,
        seq=dev.seq,
        contributor=dev.pseudonym,
        period=period,
        t_hour=f"{period}-01T09:00:00Z",
        manifest_version=1,
        redaction_version="r1",
        kinds=["pointer.down", "text.typed"],
        key_id=sk.key_id,
        recipient=sk.public_key,
        device_key=signer or dev.key,
    )
    dev.sealed.append(blob)
    return blob


@pytest.fixture
def clock() -> Clock:
    return Clock()


MASTER_ENV = {"KEYSTEP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}


@pytest.fixture
def vault(tmp_path: Path, clock: Clock) -> Iterator[LocalVault]:
    v = LocalVault.open(tmp_path / "vault", create=True, clock=clock, env=MASTER_ENV)
    yield v
    v.close()


def make_device(
    vault: Vault, contributor_id: str = "ann@example.org", device_id: str | None = None
) -> Device:
    p = vault.enroll_contributor(contributor_id)
    key = Ed25519PrivateKey.generate()
    dev = Device(device_id or f"d-{contributor_id}", key, contributor_id, p)
    vault.register_device(dev.device_id, dev.public, pseudonym=p)
    return dev


@pytest.fixture
def device(vault: LocalVault) -> Device:
    return make_device(vault)


@pytest.fixture
def builder_grant(vault: LocalVault, clock: Clock) -> Callable[[], None]:
    def make() -> None:
        vault.create_grant(
            BUILDER,
            "model-training",
            "sealed-batches",
            expires=clock.now + timedelta(days=30),
            by=STEWARD_A,
        )

    return make


@pytest.fixture(params=["local", "remote-tcp", "remote-unix"])
def any_vault(request: pytest.FixtureRequest, vault: LocalVault, tmp_path: Path) -> Iterator[Vault]:
    """The contract suite runs against every implementation of the Vault interface."""
    if request.param == "local":
        yield vault
        return
    sock = tmp_path / "vault.sock" if request.param == "remote-unix" else None
    server = VaultServer(vault, token="t0ken", socket_path=sock).start()
    client = RemoteVault(server.url, token="t0ken")
    try:
        yield client
    finally:
        client.close()
        server.stop()
