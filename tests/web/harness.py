"""Real collector processes, real devices and sealed batches for the service tests.

Imported by the conftest of tests/web, tests/agent and tests/fleet (and bench/fleet.py).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystep.model.batch import BatchContent, encode_content
from keystep.model.events import Event
from keystep.seal.envelope import seal_batch

PYTHON = sys.executable
TOKENS = {
    "steward": "steward-token-0123456789abcdef",
    "operator": "operator-token-0123456789abcdef",
    "auditor": "auditor-token-0123456789abcdef",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_tokens(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "tokens": [
                    {"name": f"{role}-1", "role": role, "token": tok}
                    for role, tok in TOKENS.items()
                ]
            }
        )
    )
    return path


@dataclass
class CollectorProc:
    """``keystep serve`` in its own process on a free loopback port."""

    db: str
    root: Path
    name: str = "c1"
    lease_ttl: float = 3.0
    max_batch_bytes: int = 4 * 1024 * 1024
    vault_dir: Path | None = None
    state_dir: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> CollectorProc:
        self.root.mkdir(parents=True, exist_ok=True)
        tokens = write_tokens(self.root / "tokens.json")
        vault = self.vault_dir or self.root / f"vault-{self.name}"
        state = self.state_dir or self.root / "state"
        env = dict(os.environ)
        with open(self.root / f"{self.name}.log", "ab") as log:  # the child keeps its copy
            self.proc = self._spawn(log, tokens, vault, state, env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.root / f"{self.name}.log").read_text()[-3000:]
                raise RuntimeError(f"collector exited: {tail}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("collector did not become healthy")

    def _spawn(
        self, log: Any, tokens: Path, vault: Path, state: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                PYTHON,
                "-m",
                "keystep.cli.main",
                "serve",
                "--db",
                self.db,
                "--blobs",
                str(self.root / "blobs"),
                "--vault",
                str(vault),
                "--state",
                str(state),
                "--tokens",
                str(tokens),
                "--lease-ttl",
                str(self.lease_ttl),
                "--max-batch-bytes",
                str(self.max_batch_bytes),
                "--port",
                str(self.port),
                "--home",
                str(self.root / "home"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(timeout=15)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def staff(self, role: str = "steward") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {TOKENS[role]}"}
        )


@dataclass
class SimDevice:
    """An enrolled device made by hand: its key, credential and sealing keys."""

    server: str
    device_id: str
    credential: str
    contributor_token: str
    pseudonym: str
    key: Ed25519PrivateKey
    sealing: dict[str, dict[str, Any]]
    lease_public_key: bytes
    seq: int = 0

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.server,
            timeout=30,
            headers={"Authorization": f"Bearer {token or self.credential}"},
        )

    def consent(self) -> None:
        with self.http(self.contributor_token) as h:
            m = h.get("/v1/manifest").json()
            r = h.post(
                "/v1/consent",
                json={"manifest_version": m["version"], "manifest_digest": m["digest"]},
            )
            assert r.status_code == 201, r.text

    def seal(
        self,
        *,
        size: int = 2000,
        kinds: tuple[str, ...] = ("pointer.move",),
        t: float | None = None,
        contributor: str | None = None,
        seq: int | None = None,
        batch_id: str | None = None,
        key: Ed25519PrivateKey | None = None,
        manifest_version: int = 1,
    ) -> bytes:
        t = time.time() if t is None else t
        period = time.strftime("%Y-%m", time.gmtime(t))
        sk = self.sealing.get(period) or next(iter(self.sealing.values()))
        if seq is None:
            self.seq += 1
            seq = self.seq
        events = [
            Event(t=t + i * 0.01, kind="pointer.move", data={"x": i, "y": i}) for i in range(3)
        ]
        pad = base64.b64encode(os.urandom(size)).decode()[:size]
        content = encode_content(BatchContent(events=events, meta={"pad": pad}))
        return seal_batch(
            content,
            batch_id=batch_id or str(uuid_v7()),
            device=self.device_id,
            seq=seq,
            contributor=contributor or self.pseudonym,
            period=sk["period"],
            t_hour=time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(t)),
            manifest_version=manifest_version,
            redaction_version="1",
            kinds=kinds,
            key_id=sk["key_id"],
            recipient=base64.b64decode(sk["public_key"]),
            device_key=key or self.key,
            level=1,
        )

    def upload(
        self,
        envelope: bytes,
        *,
        content_type: str = "application/octet-stream",
        token: str | None = None,
    ) -> httpx.Response:
        with self.http(token) as h:
            return h.post("/v1/batches", content=envelope, headers={"Content-Type": content_type})


def uuid_v7() -> uuid.UUID:
    import uuid6

    return uuid6.uuid7()


def enrollment_code(c: CollectorProc, contributor: str) -> str:
    with c.staff() as s:
        r = s.post("/v1/enrollment-codes", json={"contributor_id": contributor})
        assert r.status_code == 201, r.text
        code: str = r.json()["code"]
        return code


def enroll_sim(c: CollectorProc, contributor: str, *, consent: bool = True) -> SimDevice:
    code = enrollment_code(c, contributor)
    key = Ed25519PrivateKey.generate()
    r = httpx.post(
        f"{c.url}/v1/devices",
        timeout=30,
        json={
            "code": code,
            "contributor_id": contributor,
            "public_key": base64.b64encode(key.public_key().public_bytes_raw()).decode(),
        },
    )
    assert r.status_code == 201, r.text
    d = r.json()
    dev = SimDevice(
        server=c.url,
        device_id=d["device_id"],
        credential=d["credential"],
        contributor_token=d["contributor_token"],
        pseudonym=d["pseudonym"],
        key=key,
        sealing={k["period"]: k for k in d["sealing_keys"]},
        lease_public_key=base64.b64decode(d["lease_public_key"]),
    )
    if consent:
        dev.consent()
    return dev
