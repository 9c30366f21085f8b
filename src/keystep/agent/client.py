"""Talking to the collector: enroll once, then drain the outbox with backoff.

The credential from enrollment lives in the home (0600). A batch leaves the outbox only
after the collector's acknowledgement names its id and the SHA-256 of exactly the bytes
sent; anything else — a timeout, a reset, a 5xx, a collector killed mid-request — leaves
it pending for the next try, and the collector answers a repeat with the same ack.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystep.agent.deletions import DeletionQueue
from keystep.home import CONFIG_VERSION, Home, ensure_private_dir, write_json, write_private
from keystep.outbox import Outbox
from keystep.seal.device import DeviceKeyError, load_device_key

log = logging.getLogger(__name__)

CREDENTIAL_VERSION: Final = 1
UPLOAD_PATH: Final = "/v1/batches"
FORGET_PATH: Final = "/v1/forget"
FORGET_CHUNK: Final = 500
ENVELOPE_TYPE: Final = "application/octet-stream"


class AgentError(RuntimeError):
    """Enrollment or configuration that cannot proceed; the message says what to do."""


class UploadRefused(Exception):
    """The collector answered with a 4xx: retrying the same bytes will not help soon."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class DeviceCredential:
    server: str
    device_id: str
    credential: str
    contributor_token: str
    pseudonym: str
    lease_public_key: bytes
    manifest_version: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CREDENTIAL_VERSION,
            "server": self.server,
            "device_id": self.device_id,
            "credential": self.credential,
            "contributor_token": self.contributor_token,
            "pseudonym": self.pseudonym,
            "lease_public_key": base64.b64encode(self.lease_public_key).decode(),
            "manifest_version": self.manifest_version,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeviceCredential:
        if d.get("version") != CREDENTIAL_VERSION:
            raise AgentError(f"unknown credential file version {d.get('version')!r}")
        return cls(
            server=d["server"],
            device_id=d["device_id"],
            credential=d["credential"],
            contributor_token=d["contributor_token"],
            pseudonym=d["pseudonym"],
            lease_public_key=base64.b64decode(d["lease_public_key"]),
            manifest_version=d.get("manifest_version"),
        )


def credential_file(home: Home) -> Path:
    return home.device_dir / "credential.json"


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))
    except (ValueError, AttributeError):
        return resp.text[:200]


def device_key(home: Home) -> Ed25519PrivateKey:
    """The device's signing key, created (0600) on first use."""
    path = home.device_key_file
    if path.exists():
        try:
            return load_device_key(path)
        except DeviceKeyError as exc:
            raise AgentError(str(exc)) from exc
    key = Ed25519PrivateKey.generate()
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return key


def enroll(
    home: Home, server: str, code: str | None, *, transport: httpx.BaseTransport | None = None
) -> DeviceCredential:
    """The stored credential, or enroll with ``code`` once and store it."""
    path = credential_file(home)
    if path.exists():
        cred = DeviceCredential.from_json(json.loads(path.read_text("utf-8")))
        if cred.server.rstrip("/") != server.rstrip("/"):
            raise AgentError(f"this home is enrolled with {cred.server}, not {server}")
        return cred
    if not code:
        raise AgentError("this device is not enrolled: pass --enroll-code from a steward")
    public = device_key(home).public_key().public_bytes_raw()
    with httpx.Client(base_url=server, timeout=30, transport=transport) as client:
        resp = client.post(
            "/v1/devices",
            json={
                "code": code,
                "public_key": base64.b64encode(public).decode(),
                # Lets the vault recognise the person later (export, feed, erase).
                "contributor_id": os.environ.get("KEYSTEP_CONTRIBUTOR") or None,
            },
        )
    if resp.status_code != 201:
        raise AgentError(f"enrollment refused ({resp.status_code}): {_detail(resp)}")
    d = resp.json()
    cred = DeviceCredential(
        server=server,
        device_id=d["device_id"],
        credential=d["credential"],
        contributor_token=d["contributor_token"],
        pseudonym=d["pseudonym"],
        lease_public_key=base64.b64decode(d["lease_public_key"]),
        manifest_version=d["manifest_version"],
    )
    # The sealing keys in the layout `keystep init` writes, so the batcher seals to them.
    write_json(home.device_dir / "sealing_keys.json", {k["period"]: k for k in d["sealing_keys"]})
    _write_home(home, cred, transport=transport)
    write_json(path, cred.to_json())
    return cred


def _write_home(
    home: Home, cred: DeviceCredential, *, transport: httpx.BaseTransport | None
) -> None:
    """A managed device's home: its config and the manifest in force, from the collector."""
    for d in (home.root, home.device_dir, home.outbox_dir, home.state_dir, home.consent_dir):
        ensure_private_dir(d)
    if not home.manifest_file.exists():
        with httpx.Client(base_url=cred.server, timeout=30, transport=transport) as client:
            resp = client.get(
                "/v1/manifest", headers={"Authorization": f"Bearer {cred.contributor_token}"}
            )
        if resp.status_code == 200:
            write_private(home.manifest_file, resp.json()["yaml"].encode("utf-8"))
    if not home.config_file.exists():
        write_json(
            home.config_file,
            {
                "config_version": CONFIG_VERSION,
                "device_id": cred.device_id,
                "contributor_id": cred.pseudonym,
                "pseudonym": cred.pseudonym,
                "vault": {"kind": "remote"},
                "collector": {"kind": "server", "url": cred.server},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )


def sealing_key_fetcher(cred: DeviceCredential) -> Callable[[str], Any]:
    """For the sealer: a period's public key from the collector (which asks the vault)."""

    def fetch(period: str) -> Any:
        with httpx.Client(base_url=cred.server, timeout=30) as client:
            resp = client.get(
                "/v1/devices/me/sealing-key",
                params={"period": period},
                headers={"Authorization": f"Bearer {cred.credential}"},
            )
        if resp.status_code != 200:
            raise AgentError(f"no sealing key for {period}: {_detail(resp)}")
        d = resp.json()
        return SimpleNamespace(
            key_id=d["key_id"],
            public_key=base64.b64decode(d["public_key"]),
            pseudonym=d["pseudonym"],
            period=d["period"],
        )

    return fetch


class CollectorClient:
    """The device's authenticated HTTP client (HTTP/1.1 keep-alive)."""

    def __init__(
        self,
        server: str,
        credential: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=server,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {credential}"},
        )

    def upload(self, envelope: bytes) -> dict[str, Any]:
        resp = self._http.post(
            UPLOAD_PATH, content=envelope, headers={"Content-Type": ENVELOPE_TYPE}
        )
        if resp.status_code == 200:
            ack: dict[str, Any] = resp.json()
            return ack
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise UploadRefused(resp.status_code, _detail(resp))
        raise httpx.HTTPStatusError(
            f"collector answered {resp.status_code}", request=resp.request, response=resp
        )

    def forget(self, batch_ids: list[str], *, contributor_token: str) -> int:
        """Ask the collector to delete these uploaded batches (the contributor's own, so
        the contributor token, not the device credential); returns how many it deleted."""
        resp = self._http.post(
            FORGET_PATH,
            json={"batch_ids": batch_ids},
            headers={"Authorization": f"Bearer {contributor_token}"},
        )
        if resp.status_code == 200:
            return int(resp.json()["count"])
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise UploadRefused(resp.status_code, _detail(resp))
        raise httpx.HTTPStatusError(
            f"collector answered {resp.status_code}", request=resp.request, response=resp
        )

    def close(self) -> None:
        self._http.close()


class Uploader:
    """Drains the outbox: oldest first, acknowledge only on a matching ack."""

    def __init__(
        self,
        outbox: Outbox,
        client: CollectorClient,
        *,
        deletions: DeletionQueue | None = None,
        contributor_token: str | None = None,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        batch_limit: int = 32,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._deletions = deletions
        self._contributor_token = contributor_token
        self.forgotten = 0
        self._base = base_delay
        self._max = max_delay
        self._limit = batch_limit
        self.refused: dict[str, UploadRefused] = {}
        self.uploaded = 0

    def drain_once(self) -> int:
        """Upload what is pending now; returns how many were acknowledged. Transport errors
        propagate (the caller backs off); refusals are remembered and skipped."""
        done = 0
        for pb in self._outbox.pending(limit=self._limit):
            if pb.batch_id in self.refused:
                continue
            try:
                ack = self._client.upload(pb.envelope)
            except UploadRefused as exc:
                # Kept in the outbox: a consent given later, or a steward's fix, may let it in.
                log.warning("batch %s refused: %s", pb.batch_id, exc)
                self.refused[pb.batch_id] = exc
                continue
            if (
                ack.get("batch_id") != pb.batch_id
                or ack.get("sha256") != hashlib.sha256(pb.envelope).hexdigest()
            ):
                raise AgentError(f"the collector acknowledged other bytes for {pb.batch_id}")
            self._outbox.acknowledge(pb.batch_id)
            done += 1
            self.uploaded += 1
        return done

    def forget_once(self) -> int:
        """Send the ids ``keystep forget`` queued; each leaves the queue only once the
        collector confirmed. A refusal or a transport error propagates (the caller backs
        off and the ids stay queued)."""
        if self._deletions is None or self._contributor_token is None:
            return 0
        ids = self._deletions.ids()
        deleted = 0
        for i in range(0, len(ids), FORGET_CHUNK):
            chunk = ids[i : i + FORGET_CHUNK]
            deleted += self._client.forget(chunk, contributor_token=self._contributor_token)
            self._deletions.remove(chunk)
        self.forgotten += deleted
        return deleted

    def run(self, stop: threading.Event, *, idle: float = 1.0) -> None:
        failures = 0
        while not stop.is_set():
            try:
                # Deletions first: what the person asked to forget goes before new uploads.
                self.forget_once()
                n = self.drain_once()
                failures = 0
                if n == 0:
                    stop.wait(idle)
                    # Refusals are retried now and then (consent may have been given since).
                    if random.random() < 0.05:
                        self.refused.clear()
            except (httpx.HTTPError, OSError, UploadRefused) as exc:
                # UploadRefused here is a refused deletion (drain_once keeps refused
                # uploads to itself): retried with the same backoff.
                failures += 1
                # Exponential backoff with full jitter (AWS architecture blog, 2015): a
                # fleet returning after an outage spreads out instead of stampeding.
                delay = random.uniform(0, min(self._max, self._base * 2 ** min(failures, 16)))
                log.info("upload failed (%s); next try in %.1f s", exc, delay)
                stop.wait(delay)
