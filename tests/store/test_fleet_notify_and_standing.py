"""The kill switch's NOTIFY commits with it, and one read says which devices may hold a lease."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest
from store_support import AS_A, AS_B, T0, A, B, device, truncate

from keystep.store.base import ConsentRecord, FleetState, ManifestRecord, Repository, Scope
from keystep.store.pg_admin import TempDatabase
from keystep.store.postgres import PostgresRepository

CHANNEL = "keystep_test_fleet"
M1 = ManifestRecord(1, "v: 1", "digest-1", T0)


def _payload(state: FleetState) -> tuple[str, str]:
    return CHANNEL, json.dumps({"halted": state.halted, "generation": state.generation})


def _listen(db: TempDatabase) -> psycopg.Connection:
    conn = psycopg.connect(db.admin_url, autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def _heard(conn: psycopg.Connection, timeout: float) -> list[dict[str, object]]:
    return [json.loads(n.payload) for n in conn.notifies(timeout=timeout, stop_after=1)]


@pytest.mark.postgres
def test_a_fleet_change_and_its_notify_commit_together(pg_db: TempDatabase) -> None:
    truncate(pg_db)
    repo = PostgresRepository(pg_db.app_url, max_size=2)
    listener = _listen(pg_db)
    try:
        state = repo.set_fleet_halted(True, at=T0, by="s", scope=Scope.steward(), notify=_payload)
        assert _heard(listener, 5) == [{"halted": True, "generation": state.generation}]

        def fails_after_the_update(s: FleetState) -> tuple[str, str]:
            raise RuntimeError("the collector dies between the update and the notify")

        with pytest.raises(RuntimeError):
            repo.set_fleet_halted(
                False, at=T0, by="s", scope=Scope.steward(), notify=fails_after_the_update
            )
        # Neither happened: the state is unchanged and nobody was told anything.
        assert repo.fleet_state() == state
        assert _heard(listener, 0.5) == []
    finally:
        listener.close()
        repo.close()


def _standing_world(repo: Repository) -> None:
    """devA may record; devA2 is revoked; devB's contributor withdrew; devC's contributor
    consented to other text under the same version."""
    repo.publish_manifest(M1, scope=Scope.steward())
    repo.add_device(device("devA", A), scope=Scope.collector())
    repo.add_device(device("devA2", A, revoked_at=T0), scope=Scope.collector())
    repo.add_device(device("devB", B), scope=Scope.collector())
    repo.add_device(device("devC", "psC"), scope=Scope.collector())
    repo.record_consent(ConsentRecord(A, 1, "digest-1", T0), scope=AS_A)
    repo.record_consent(ConsentRecord(B, 1, "digest-1", T0), scope=AS_B)
    repo.withdraw_consent(B, at=T0 + timedelta(hours=1), scope=AS_B)
    repo.record_consent(
        ConsentRecord("psC", 1, "other-text", T0), scope=Scope.of_contributor("psC")
    )


def test_devices_barred_names_each_device_that_may_not_record(repo: Repository) -> None:
    _standing_world(repo)
    ids = ["devA", "devA2", "devB", "devC", "nobody"]
    barred = repo.devices_barred(ids, manifest=M1)
    assert barred == {
        "devA2": "device revoked",
        "devB": "no consent to manifest v1",
        "devC": "no consent to manifest v1",  # consented to other text under that version
        "nobody": "device revoked",
    }
    # The same answer as asking the generic way, device by device.
    assert barred == Repository.devices_barred(repo, ids, manifest=M1)
    assert repo.devices_barred([], manifest=M1) == {}
    # Under a later manifest nobody has consented yet.
    m2 = ManifestRecord(2, "v: 2", "digest-2", T0)
    assert set(repo.devices_barred(["devA"], manifest=m2)) == {"devA"}
