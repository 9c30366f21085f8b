"""A managed device's home works with the contributor's CLI: `keystep status` shows the
collector, the lease and the upload queue; `keystep forget` deletes uploaded batches at the
collector (queued, sent by the agent's uploader, dropped from the queue once confirmed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import TOKENS, CollectorProc, SimDevice, enroll_sim, enrollment_code, free_port

from keystep.agent.client import CollectorClient, Uploader, enroll
from keystep.agent.deletions import DeletionQueue
from keystep.home import Home
from keystep.outbox import Outbox

pytestmark = pytest.mark.postgres


def _managed(c: CollectorProc, root: Path, who: str) -> tuple[Home, SimDevice]:
    """A home enrolled by the agent's own code, with consent given at the collector."""
    home = Home(root / who)
    cred = enroll(home, c.url, enrollment_code(c, who))
    key = serialization.load_pem_private_key(home.device_key_file.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    dev = SimDevice(
        server=c.url,
        device_id=cred.device_id,
        credential=cred.credential,
        contributor_token=cred.contributor_token,
        pseudonym=cred.pseudonym,
        key=key,
        sealing=json.loads((home.device_dir / "sealing_keys.json").read_text()),
        lease_public_key=cred.lease_public_key,
    )
    dev.consent()
    return home, dev


def _fill(home: Home, dev: SimDevice, n: int) -> list[str]:
    box = Outbox(home.outbox_db)
    ids = []
    try:
        for _ in range(n):
            seq = box.reserve_seq()
            env = dev.seal(seq=seq)
            bid = json.loads(env[12 : 12 + int.from_bytes(env[8:12], "big")])["batch_id"]
            box.put(bid, seq, time.time() - 5, time.time(), env)
            ids.append(bid)
    finally:
        box.close()
    return ids


def _cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keystep.cli.main", *args, "--home", str(home.root)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KEYSTEP_MASTER_KEY": ""},
    )


def _mine(dev: SimDevice) -> set[str]:
    with dev.http(dev.contributor_token) as h:
        return {b["batch_id"] for b in h.get("/v1/me/batches").json()}


def test_forget_on_a_managed_device_deletes_uploaded_batches_at_the_collector(
    collectors: Callable[..., CollectorProc], tmp_path: Path
) -> None:
    c = collectors("forget")
    home, dev = _managed(c, tmp_path, "fiona")
    bob = enroll_sim(c, "bob")
    assert bob.upload(bob.seal()).status_code == 200
    ids = _fill(home, dev, 3)
    box = Outbox(home.outbox_db)
    client = CollectorClient(c.url, dev.credential)
    uploader = Uploader(
        box, client, deletions=DeletionQueue.of(home), contributor_token=dev.contributor_token
    )
    try:
        assert uploader.drain_once() == 3
        assert _mine(dev) == set(ids)

        out = _cli(home, "forget", "--last", "10m")
        assert out.returncode == 0, out.stderr
        assert "3 already uploaded, queued for collector deletion" in out.stdout
        assert set(DeletionQueue.of(home).ids()) == set(ids)

        # The collector is unreachable: the ids stay queued for the next try.
        dead = CollectorClient(f"http://127.0.0.1:{free_port()}", dev.credential, timeout=2)
        offline = Uploader(
            box, dead, deletions=DeletionQueue.of(home), contributor_token=dev.contributor_token
        )
        with pytest.raises(httpx.HTTPError):
            offline.forget_once()
        dead.close()
        assert set(DeletionQueue.of(home).ids()) == set(ids)

        assert uploader.forget_once() == 3
        assert DeletionQueue.of(home).ids() == []
        assert _mine(dev) == set()
        assert len(_mine(bob)) == 1  # nobody else's batches went
    finally:
        client.close()
        box.close()


def test_forget_by_batch_id_deletes_only_the_callers_own(
    collectors: Callable[..., CollectorProc],
) -> None:
    c = collectors("forget-ids")
    alice, bob = enroll_sim(c, "alice"), enroll_sim(c, "bob")
    a = alice.upload(alice.seal()).json()["batch_id"]
    b = bob.upload(bob.seal()).json()["batch_id"]
    with alice.http(alice.contributor_token) as h:
        # Bob's id deletes nothing and is not told apart from an unknown one.
        unknown = "01a20000-0000-7000-8000-000000000000"
        assert h.post("/v1/forget", json={"batch_ids": [b, unknown]}).json() == {"count": 0}
        assert h.post("/v1/forget", json={"batch_ids": [a]}).json() == {"count": 1}
        # A retry after a lost confirmation is harmless.
        assert h.post("/v1/forget", json={"batch_ids": [a]}).json() == {"count": 0}
        # Not a batch id at all (a NUL byte once reached PostgreSQL as a 500).
        for bad in (
            {},
            {"batch_ids": [a], "last_seconds": 60},
            {"batch_ids": []},
            {"batch_ids": ["\x00"]},
            {"batch_ids": ["no-such"]},
        ):
            assert h.post("/v1/forget", json=bad).status_code == 422, bad
    # A device credential is not the contributor: it may not forget.
    with alice.http() as h:
        assert h.post("/v1/forget", json={"batch_ids": [a]}).status_code == 403
    assert _mine(bob) == {b}


def _status(home: Home) -> dict[str, Any]:
    out = _cli(home, "status", "--json")
    assert out.returncode == 0, out.stderr
    st: dict[str, Any] = json.loads(out.stdout)
    return st


def _lease_state(home: Home) -> str | None:
    agent = _status(home)["agent"]
    return None if agent is None else str(agent["lease"]["state"])


def _wait_for(pred: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_status_on_a_managed_home_shows_collector_lease_and_queue(
    collectors: Callable[..., CollectorProc], tmp_path: Path
) -> None:
    c = collectors("status", lease_ttl=30.0)
    home, dev = _managed(c, tmp_path, "gus")
    _fill(home, dev, 2)
    st = _status(home)
    assert st["collector"] == {"kind": "server", "url": c.url}
    assert st["vault"] == {"kind": "remote", "server": c.url}
    assert st["agent"] is None
    assert st["outbox"]["pending"] == 2
    text = _cli(home, "status")
    assert text.returncode == 0, text.stderr
    assert f"collector:  {c.url}" in text.stdout
    assert "lease:      no agent is running" in text.stdout

    agent = subprocess.Popen(
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
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _lease_state(home) == "held", 30)
        st = _status(home)
        assert 20 < st["agent"]["lease"]["seconds_left"] <= 30
        assert st["agent"]["connected"] is True
        _wait_for(lambda: _status(home)["outbox"]["pending"] == 0, 30)
        assert "lease:      held" in _cli(home, "status").stdout

        with httpx.Client(
            base_url=c.url, headers={"Authorization": f"Bearer {TOKENS['steward']}"}
        ) as s:
            assert s.post("/v1/fleet/halt", json={"reason": "test"}).status_code == 200
            try:
                _wait_for(lambda: _lease_state(home) == "halted", 10)
                assert _status(home)["agent"]["lease"]["seconds_left"] == 0
            finally:
                s.post("/v1/fleet/resume", json={"reason": "test"})
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    _wait_for(lambda: _status(home)["agent"] is None, 10)
