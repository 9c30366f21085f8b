"""The embedded collector: the outbox drains into the home's SQLite database and blob folder
through the same checks as the service, and forget/erase remove blob and row."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
import uuid6
from cryptography.hazmat.primitives import serialization

from keystep.collector.embedded import EmbeddedCollector, delete_batches, drain_outbox
from keystep.home import Home, write_json
from keystep.model.manifest import load_manifest
from keystep.outbox import Outbox
from keystep.seal.envelope import seal_batch
from keystep.store.base import Scope


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    from keystep.cli.setup import init_home

    monkeypatch.setenv("KEYSTEP_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    h = Home(tmp_path / "home")
    init_home(h, contributor="ann@example.org", vault_dir=tmp_path / "home-vault")
    return h


def consent(home: Home) -> None:
    m = load_manifest(home.manifest_file.read_bytes())
    write_json(
        home.consent_file,
        {"state": "given", "manifest_version": m.version, "manifest_digest": m.digest,
         "at": time.time()},
    )  # fmt: skip


def seal(home: Home, seq: int, **header: object) -> tuple[str, bytes]:
    cfg = home.read_config()
    keys = json.loads((home.device_dir / "sealing_keys.json").read_text())
    period = sorted(keys)[0]
    key = keys[period]
    device_key = serialization.load_pem_private_key(home.device_key_file.read_bytes(), None)
    fields: dict[str, object] = {
        "batch_id": str(uuid6.uuid7()),
        "device": cfg["device_id"],
        "seq": seq,
        "contributor": cfg["pseudonym"],
        "period": period,
        "t_hour": time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime()),
        "manifest_version": 1,
        "redaction_version": "1",
        "kinds": ("key.down",),
        "key_id": key["key_id"],
        "recipient": base64.b64decode(key["public_key"]),
        "device_key": device_key,
    }
    fields.update(header)
    return str(fields["batch_id"]), seal_batch(os.urandom(1000), **fields)  # type: ignore[arg-type]


def fill(home: Home, *envelopes: tuple[str, bytes]) -> None:
    box = Outbox(home.outbox_db)
    try:
        for i, (bid, env) in enumerate(envelopes, 1):
            box.put(bid, i, time.time() - 60, time.time(), env)
    finally:
        box.close()


def pending(home: Home) -> list[str]:
    box = Outbox(home.outbox_db)
    try:
        return [p.batch_id for p in box.pending()]
    finally:
        box.close()


def test_the_outbox_drains_into_the_embedded_collector(home: Home) -> None:
    consent(home)
    batches = [seal(home, n) for n in (1, 2, 3)]
    fill(home, *batches)
    report = drain_outbox(home)
    assert report.acknowledged == [b for b, _ in batches]
    assert report.rejected == []
    assert pending(home) == []
    with EmbeddedCollector(home) as c:
        pseudonym = home.read_config()["pseudonym"]
        stored = c.repo.list_batches(scope=Scope.of_contributor(pseudonym))
        assert [r.batch_id for r in stored] == [b for b, _ in batches]
        assert [c.blobs.get(r.blob_key) for r in stored] == [e for _, e in batches]
    assert drain_outbox(home).acknowledged == []  # nothing left, nothing twice


def test_without_consent_batches_stay_in_the_outbox(home: Home) -> None:
    fill(home, seal(home, 1))
    report = drain_outbox(home)
    assert report.acknowledged == []
    ((_, status, why),) = report.rejected
    assert status == 403 and "no active consent" in why
    assert len(pending(home)) == 1
    consent(home)
    assert len(drain_outbox(home).acknowledged) == 1
    assert pending(home) == []


def test_a_withdrawal_is_mirrored_before_the_next_drain(home: Home) -> None:
    consent(home)
    fill(home, seal(home, 1))
    assert len(drain_outbox(home).acknowledged) == 1
    state = json.loads(home.consent_file.read_text())
    write_json(home.consent_file, {**state, "state": "withdrawn"})
    box = Outbox(home.outbox_db)
    try:
        bid, env = seal(home, 2)
        box.put(bid, 2, time.time(), time.time(), env)
    finally:
        box.close()
    report = drain_outbox(home)
    assert [r[0] for r in report.rejected] == [bid]


def test_a_conflicting_replay_is_audited_in_the_vault(home: Home) -> None:
    consent(home)
    bid, env = seal(home, 1)
    fill(home, (bid, env))
    drain_outbox(home)
    _, other = seal(home, 1, batch_id=bid)
    fill(home, (str(uuid6.uuid7()), other))
    report = drain_outbox(home)  # audits through the home's own vault
    assert [r[1] for r in report.rejected] == [409]
    log = (home.vault_dir / "audit" / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line.split(" ", 1)[1]) for line in log]
    conflicts = [e for e in entries if e["event"] == "batch-conflict"]
    assert [(e["batch_id"], e["device"]) for e in conflicts] == [
        (bid, home.read_config()["device_id"])
    ]


def test_forget_and_erase_remove_blob_and_row(home: Home) -> None:
    consent(home)
    batches = [seal(home, n) for n in (1, 2)]
    fill(home, *batches)
    drain_outbox(home)
    gone = delete_batches(home, [batches[0][0], "not-there"])
    assert [r.batch_id for r in gone] == [batches[0][0]]
    with EmbeddedCollector(home) as c:
        pseudonym = home.read_config()["pseudonym"]
        left = c.repo.list_batches(scope=Scope.of_contributor(pseudonym))
        assert [r.batch_id for r in left] == [batches[1][0]]
        assert list(c.blobs.iter_keys()) == [left[0].blob_key]
