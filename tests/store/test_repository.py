"""The Repository contract: every backend stores, deduplicates and scopes rows the same way."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from store_support import AS_A, AS_B, T0, A, B, batch, device

from keystep.store.base import (
    SEES_ALL,
    BatchRecord,
    Conflict,
    ConsentRecord,
    EnrollmentCode,
    EnrollmentCodeInvalid,
    ManifestRecord,
    Repository,
    RepositoryError,
    Scope,
    ScopeError,
)
from keystep.store.factory import open_repository
from keystep.store.pg_admin import TempDatabase
from keystep.store.postgres import PostgresRepository
from keystep.store.sqlite import SqliteRepository

# -- batches ------------------------------------------------------------------------------


def test_a_stored_batch_reads_back_equal(repo: Repository) -> None:
    r = batch(1)
    assert repo.add_batch(r, scope=AS_A) is r
    got = repo.get_batch(r.batch_id, scope=AS_A)
    assert got == r
    assert got is not None and got.received_at.tzinfo is not None
    assert repo.find_batch_by_seq("devA", 1, scope=AS_A) == r
    assert repo.list_batches(scope=AS_A) == [r]


def test_the_same_batch_twice_returns_the_first_record(repo: Repository) -> None:
    first = batch(1)
    repo.add_batch(first, scope=AS_A)
    again = replace(first, received_at=T0 + timedelta(hours=1))
    assert repo.add_batch(again, scope=AS_A) == first
    assert repo.add_batch(first, scope=AS_A) is not first  # "already there", told apart
    assert repo.list_batches(scope=AS_A) == [first]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"sha256": "f" * 64}, "different bytes under the same batch id"),
        ({"batch_id": "0190a1b2-c3d4-7e5f-8a9b-0000000000ff"}, "another batch under the same seq"),
    ],
)
def test_a_different_batch_under_a_taken_identity_conflicts(
    repo: Repository, change: dict[str, object], why: str
) -> None:
    first = batch(1)
    repo.add_batch(first, scope=AS_A)
    with pytest.raises(Conflict) as info:
        repo.add_batch(replace(first, **change), scope=AS_A)  # type: ignore[arg-type]
    assert info.value.existing == first, why
    assert repo.list_batches(scope=AS_A) == [first]


def test_a_batch_id_held_by_another_contributor_conflicts_without_showing_it(
    repo: Repository,
) -> None:
    repo.add_batch(batch(1, contributor=B, device="devB"), scope=AS_B)
    with pytest.raises(Conflict) as info:
        repo.add_batch(batch(1, sha256="e" * 64), scope=AS_A)
    assert info.value.existing is None
    assert repo.list_batches(scope=AS_A) == []


def test_contributors_see_only_their_own_batches(repo: Repository) -> None:
    a, b = batch(1), batch(2, contributor=B, device="devB")
    repo.add_batch(a, scope=AS_A)
    repo.add_batch(b, scope=AS_B)
    assert repo.list_batches(scope=AS_A) == [a]
    assert repo.list_batches(scope=AS_B) == [b]
    assert repo.get_batch(b.batch_id, scope=AS_A) is None
    assert repo.find_batch_by_seq("devB", 2, scope=AS_A) is None
    assert repo.list_batches(scope=AS_A, contributor=B) == []
    assert repo.list_batches(scope=Scope.builder()) == [a, b]
    assert repo.list_batches(scope=Scope.builder(), contributor=B) == [b]
    # Stewards and the device-authenticating collector see no batch at all (principle 9).
    assert repo.list_batches(scope=Scope.steward()) == []
    assert repo.list_batches(scope=Scope.collector()) == []


def test_nobody_writes_a_batch_in_another_contributors_name(repo: Repository) -> None:
    with pytest.raises(ScopeError):
        repo.add_batch(batch(1, contributor=B), scope=AS_A)
    assert repo.list_batches(scope=Scope.builder()) == []


def test_a_group_of_batches_gets_one_outcome_each_and_a_bad_one_fails_alone(
    repo: Repository,
) -> None:
    first = batch(1)
    repo.add_batch(first, scope=AS_A)
    fresh, dup, other_bytes, not_mine = (
        batch(2),
        replace(first, received_at=T0 + timedelta(hours=1)),
        replace(first, sha256="f" * 64),
        batch(3, contributor=B, device="devB"),
    )
    out = repo.add_batches([(fresh, AS_A), (dup, AS_A), (other_bytes, AS_A), (not_mine, AS_A)])
    assert len(out) == 4
    assert out[0] is fresh
    assert out[1] == first and out[1] is not dup  # the stored record, as for a retry
    assert isinstance(out[2], Conflict) and out[2].existing == first
    assert isinstance(out[3], ScopeError)
    assert repo.list_batches(scope=Scope.builder()) == [first, fresh]
    assert repo.add_batches([]) == []


def test_list_filters_and_orders(repo: Repository) -> None:
    rs = [batch(n) for n in (5, 3, 4)]
    for r in rs:
        repo.add_batch(r, scope=AS_A)
    other = batch(9, period="2026-12", t_hour="2026-12-01T00:00:00Z")
    repo.add_batch(other, scope=AS_A)
    assert [r.seq for r in repo.list_batches(scope=AS_A)] == [3, 4, 5, 9]
    assert [r.seq for r in repo.list_batches(scope=AS_A, period="2026-11")] == [3, 4, 5]
    since = repo.list_batches(scope=AS_A, since_hour="2026-11-03T04:00:00Z")
    assert [r.seq for r in since] == [4, 5, 9]


def test_delete_removes_only_what_the_scope_sees(repo: Repository) -> None:
    a1, a2, b = batch(1), batch(2), batch(3, contributor=B, device="devB")
    for r, s in ((a1, AS_A), (a2, AS_A), (b, AS_B)):
        repo.add_batch(r, scope=s)
    gone = repo.delete_batches([a1.batch_id, b.batch_id, "missing"], scope=AS_A)
    assert gone == [a1]
    assert repo.list_batches(scope=Scope.builder()) == [a2, b]
    # A deleted id is free again (forget, then the device re-sends nothing; no ghost row).
    repo.add_batch(a1, scope=AS_A)


def test_concurrent_writers_all_commit_and_a_raced_duplicate_is_stored_once(
    repo: Repository,
) -> None:
    records = [batch(n) for n in range(1, 121)]
    errors: list[BaseException] = []
    results: dict[str, list[BatchRecord]] = {}
    lock = threading.Lock()

    def worker(rs: list[BatchRecord]) -> None:
        for r in rs:
            try:
                got = repo.add_batch(r, scope=AS_A)
            except BaseException as exc:
                errors.append(exc)
                continue
            with lock:
                results.setdefault(r.batch_id, []).append(got)

    # Every record is sent by two threads: both must get the same stored record back.
    chunks = [records[i::6] for i in range(6)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks + chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    stored = repo.list_batches(scope=AS_A)
    assert len(stored) == 120
    for r in stored:
        assert len(results[r.batch_id]) == 2
        assert results[r.batch_id][0] == results[r.batch_id][1] == r


def test_a_second_handle_sees_committed_batches(
    repo: Repository, reopen: Callable[[], Repository]
) -> None:
    r = batch(7)
    repo.add_batch(r, scope=AS_A)
    assert reopen().get_batch(r.batch_id, scope=AS_A) == r


# -- devices and enrollment ---------------------------------------------------------------


def test_devices_are_enrolled_once_and_scoped(repo: Repository) -> None:
    da, db = device("devA", A), device("devB", B)
    repo.add_device(da, scope=Scope.collector())
    repo.add_device(db, scope=Scope.collector())
    with pytest.raises(Conflict):
        repo.add_device(device("devA", B), scope=Scope.collector())
    assert repo.get_device("devA", scope=Scope.collector()) == da
    assert repo.list_devices(scope=Scope.steward()) == [da, db]
    assert repo.list_devices(scope=AS_A) == [da]
    assert repo.get_device("devB", scope=AS_A) is None
    assert repo.list_devices(scope=Scope.builder()) == []


def test_revocation_sticks_and_stays_within_scope(repo: Repository) -> None:
    repo.add_device(device("devA", A), scope=Scope.collector())
    repo.add_device(device("devB", B), scope=Scope.collector())
    assert repo.revoke_device("devB", at=T0, scope=AS_A) is False
    got = repo.get_device("devB", scope=Scope.collector())
    assert got is not None and not got.revoked
    assert repo.revoke_device("devA", at=T0, scope=Scope.steward())
    assert repo.revoke_device("devA", at=T0 + timedelta(days=1), scope=AS_A)
    got = repo.get_device("devA", scope=Scope.collector())
    assert got is not None and got.revoked_at == T0
    assert repo.revoke_device("nope", at=T0, scope=Scope.steward()) is False


def test_an_enrollment_code_works_once(repo: Repository) -> None:
    code = EnrollmentCode("c" * 64, A, T0, T0 + timedelta(hours=1))
    repo.add_enrollment_code(code, scope=Scope.steward())
    now = T0 + timedelta(minutes=5)
    used = repo.redeem_enrollment_code("c" * 64, now=now, scope=Scope.collector())
    assert used == replace(code, used_at=now)
    with pytest.raises(EnrollmentCodeInvalid):
        repo.redeem_enrollment_code("c" * 64, now=now, scope=Scope.collector())


@pytest.mark.parametrize(
    ("code_hash", "minutes"), [("c" * 64, 61), ("d" * 64, 5)], ids=["expired", "unknown"]
)
def test_an_expired_or_unknown_code_is_refused(
    repo: Repository, code_hash: str, minutes: int
) -> None:
    repo.add_enrollment_code(
        EnrollmentCode("c" * 64, A, T0, T0 + timedelta(hours=1)), scope=Scope.steward()
    )
    with pytest.raises(EnrollmentCodeInvalid):
        repo.redeem_enrollment_code(
            code_hash, now=T0 + timedelta(minutes=minutes), scope=Scope.collector()
        )


def test_racing_redemptions_let_exactly_one_through(repo: Repository) -> None:
    repo.add_enrollment_code(
        EnrollmentCode("c" * 64, A, T0, T0 + timedelta(hours=1)), scope=Scope.steward()
    )
    wins: list[int] = []

    def go(i: int) -> None:
        try:
            repo.redeem_enrollment_code("c" * 64, now=T0, scope=Scope.collector())
            wins.append(i)
        except EnrollmentCodeInvalid:
            pass

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1


# -- consent and manifests ----------------------------------------------------------------


def test_consent_is_given_withdrawn_and_given_again(repo: Repository) -> None:
    c = ConsentRecord(A, 1, "d1", T0)
    repo.record_consent(c, scope=AS_A)
    assert repo.active_consent(A, 1, scope=AS_A) == c
    assert repo.active_consent(A, 2, scope=AS_A) is None
    assert repo.withdraw_consent(A, at=T0 + timedelta(hours=1), scope=AS_A) == 1
    assert repo.active_consent(A, 1, scope=AS_A) is None
    (withdrawn,) = repo.consents(A, scope=AS_A)
    assert withdrawn.withdrawn_at == T0 + timedelta(hours=1)
    again = ConsentRecord(A, 1, "d1", T0 + timedelta(hours=2))
    repo.record_consent(again, scope=AS_A)
    assert repo.active_consent(A, 1, scope=AS_A) == again


def test_consents_are_private_to_their_contributor(repo: Repository) -> None:
    repo.record_consent(ConsentRecord(B, 1, "d1", T0), scope=AS_B)
    assert repo.consents(B, scope=AS_A) == []
    assert repo.consents(B, scope=Scope.steward()) == []  # refusals are invisible to managers
    assert len(repo.consents(B, scope=Scope.builder())) == 1
    assert repo.withdraw_consent(B, at=T0, scope=AS_A) == 0
    with pytest.raises(ScopeError):
        repo.record_consent(ConsentRecord(B, 2, "d2", T0), scope=AS_A)


def test_manifest_versions_are_immutable(repo: Repository) -> None:
    assert repo.latest_manifest() is None
    m1 = ManifestRecord(1, "version: 1\n", "d1", T0)
    m2 = ManifestRecord(2, "version: 2\n", "d2", T0 + timedelta(days=1))
    repo.publish_manifest(m1, scope=Scope.steward())
    repo.publish_manifest(m1, scope=Scope.steward())  # the same text again is a no-op
    repo.publish_manifest(m2, scope=Scope.steward())
    with pytest.raises(Conflict):
        repo.publish_manifest(replace(m1, yaml_text="version: 1\n# x\n", digest="dx"),
                              scope=Scope.steward())  # fmt: skip
    assert repo.get_manifest(1) == m1
    assert repo.latest_manifest() == m2
    assert repo.get_manifest(3) is None


@pytest.mark.parametrize("scope", [AS_A, Scope.collector(), Scope.builder()], ids=str)
def test_only_stewards_publish_manifests_and_pull_the_switch(
    repo: Repository, scope: Scope
) -> None:
    with pytest.raises(ScopeError):
        repo.publish_manifest(ManifestRecord(1, "v", "d", T0), scope=scope)
    with pytest.raises(ScopeError):
        repo.set_fleet_halted(True, at=T0, by="x", scope=scope)
    assert repo.latest_manifest() is None
    assert not repo.fleet_state().halted


def test_every_fleet_change_advances_the_generation(repo: Repository) -> None:
    s0 = repo.fleet_state()
    assert (s0.halted, s0.generation) == (False, 0)
    s1 = repo.set_fleet_halted(True, at=T0, by="steward-1", scope=Scope.steward())
    assert (s1.halted, s1.generation, s1.changed_at, s1.changed_by) == (True, 1, T0, "steward-1")
    s2 = repo.set_fleet_halted(True, at=T0, by="steward-2", scope=Scope.steward())
    assert s2.generation == 2
    s3 = repo.set_fleet_halted(False, at=T0, by="steward-1", scope=Scope.steward())
    assert (s3.halted, s3.generation) == (False, 3)
    assert repo.fleet_state() == s3


# -- lineage ------------------------------------------------------------------------------


def test_lineage_names_who_is_in_a_dataset(repo: Repository) -> None:
    builder = Scope.builder()
    repo.record_lineage("ds1", [("b1", A), ("b2", B)], scope=builder)
    repo.record_lineage("ds1", [("b1", A)], scope=builder)  # idempotent
    repo.record_lineage("ds2", [("b3", B)], scope=builder)
    assert [(e.batch_id, e.contributor) for e in repo.lineage("ds1", scope=builder)] == [
        ("b1", A),
        ("b2", B),
    ]
    assert [e.batch_id for e in repo.lineage("ds1", scope=AS_A)] == ["b1"]
    assert repo.datasets_of(B, scope=AS_B) == ["ds1", "ds2"]
    assert repo.datasets_of(B, scope=AS_A) == []
    assert repo.datasets_of(A, scope=Scope.steward()) == ["ds1"]
    with pytest.raises(ScopeError):
        repo.record_lineage("ds3", [("b9", B)], scope=AS_A)


def test_scopes_follow_the_published_visibility_table() -> None:
    for table, roles in SEES_ALL.items():
        for role in ("collector", "steward", "builder"):
            assert Scope(role).sees(table, A) == (role in roles)  # type: ignore[arg-type]
        assert AS_A.sees(table, A) and not AS_A.sees(table, B)
    with pytest.raises(ValueError):
        Scope("contributor")
    with pytest.raises(ValueError):
        Scope("manager")  # type: ignore[arg-type]


def test_open_repository_understands_both_urls(tmp_path: Path, pg_db: TempDatabase) -> None:
    lite = open_repository(f"sqlite:///{tmp_path}/c.sqlite")  # four slashes: absolute
    assert isinstance(lite, SqliteRepository) and lite.path == tmp_path / "c.sqlite"
    lite.close()
    pg = open_repository(pg_db.app_url)
    assert isinstance(pg, PostgresRepository) and not pg.fleet_state().halted
    pg.close()
    with pytest.raises(RepositoryError):
        open_repository("mysql://x/y")


def test_device_and_consent_read_together_as_they_read_apart(repo: Repository) -> None:
    repo.add_device(device("devA", A), scope=Scope.collector())
    repo.record_consent(ConsentRecord(A, 1, "d1", T0), scope=AS_A)
    repo.record_consent(ConsentRecord(B, 1, "d1", T0), scope=AS_B)
    dev, consent = repo.device_and_consent("devA", contributor=A, manifest_version=1)
    assert dev == repo.get_device("devA", scope=Scope.collector())
    assert consent == repo.active_consent(A, 1, scope=AS_A)
    assert consent is not None and consent.manifest_digest == "d1"
    assert repo.device_and_consent("devA", contributor=A, manifest_version=2) == (dev, None)
    assert repo.device_and_consent("nope", contributor=B, manifest_version=1)[0] is None
    repo.withdraw_consent(A, at=T0, scope=AS_A)
    repo.revoke_device("devA", at=T0, scope=Scope.steward())
    dev, consent = repo.device_and_consent("devA", contributor=A, manifest_version=1)
    assert dev is not None and dev.revoked and consent is None


def test_concurrent_reads_of_many_devices_each_get_their_own(repo: Repository) -> None:
    for i in range(12):
        who = f"ps{i}"
        repo.add_device(device(f"dev{i}", who), scope=Scope.collector())
        if i % 3:
            repo.record_consent(ConsentRecord(who, 1, f"d{i}", T0), scope=Scope.of_contributor(who))
    seen: dict[int, tuple[str | None, str | None]] = {}

    def read(i: int) -> None:
        for _ in range(5):
            dev, consent = repo.device_and_consent(
                f"dev{i}", contributor=f"ps{i}", manifest_version=1
            )
            seen[i] = (
                dev.contributor if dev else None,
                consent.manifest_digest if consent else None,
            )

    threads = [threading.Thread(target=read, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == {i: (f"ps{i}", f"d{i}" if i % 3 else None) for i in range(12)}
