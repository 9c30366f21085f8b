"""PostgreSQL hardening, proven by connecting as each role: the collector's role cannot see,
write or unprotect another contributor's rows, and the read-only roles see no contributor row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors
from store_support import batch, truncate

from keystep.store.base import SEES_ALL, Scope
from keystep.store.pg_admin import TempDatabase
from keystep.store.postgres import PostgresRepository

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 3, tzinfo=UTC)
CONTRIBUTOR_TABLES = sorted(SEES_ALL)


@pytest.fixture
def db(pg_db: TempDatabase) -> Iterator[TempDatabase]:
    truncate(pg_db)
    repo = PostgresRepository(pg_db.app_url, max_size=2)
    try:
        repo.add_batch(batch(1, contributor="psA"), scope=Scope.of_contributor("psA"))
        repo.add_batch(
            batch(2, contributor="psB", device="devB"), scope=Scope.of_contributor("psB")
        )
    finally:
        repo.close()
    yield pg_db


def connect(db: TempDatabase, role: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(db.url_as(role), autocommit=True)


def scoped_count(conn: psycopg.Connection[tuple[object, ...]], contributor: str | None,
                 role: str | None = "contributor") -> int:  # fmt: skip
    with conn.transaction():
        if contributor is not None:
            conn.execute("SELECT set_config('keystep.contributor', %s, true)", (contributor,))
        if role is not None:
            conn.execute("SELECT set_config('keystep.role', %s, true)", (role,))
        row = conn.execute("SELECT count(*) FROM batches").fetchone()
    assert row is not None
    return int(str(row[0]))


def test_the_app_role_is_neither_owner_nor_superuser_nor_bypassrls(db: TempDatabase) -> None:
    with connect(db, db.roles.app) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, False, False, False)
        owned = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'keystep' AND pg_get_userbyid(c.relowner) = current_user"
        ).fetchall()
        assert owned == []
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f'SET ROLE "{db.roles.owner}"')


def test_a_contributor_session_sees_only_its_rows(db: TempDatabase) -> None:
    with connect(db, db.roles.app) as conn:
        assert scoped_count(conn, "psA") == 1
        assert scoped_count(conn, "psB") == 1
        assert scoped_count(conn, "psC") == 0
        assert scoped_count(conn, None, None) == 0  # no scope set: nothing at all
        assert scoped_count(conn, "", None) == 0
        assert scoped_count(conn, None, "steward") == 0
        assert scoped_count(conn, None, "builder") == 2


def test_the_scope_does_not_outlive_its_transaction(db: TempDatabase) -> None:
    with connect(db, db.roles.app) as conn:
        assert scoped_count(conn, "psA") == 1
        row = conn.execute("SELECT count(*) FROM batches").fetchone()
        assert row == (0,)


def test_a_grouped_insert_is_checked_under_each_rows_own_scope(db: TempDatabase) -> None:
    """The group commit sets each row's scope in the statement that inserts it: a row under
    another contributor's scope is refused by the policies themselves (the repository's own
    check is bypassed here), and only the rows whose scope matches are stored."""
    repo = PostgresRepository(db.app_url, max_size=2)
    try:
        mine = batch(3, contributor="psA")
        forged = batch(4, contributor="psB", device="devB")
        assert repo._insert_group([(mine, Scope.of_contributor("psA"))]) == [True]
        with pytest.raises(errors.InsufficientPrivilege):
            repo._insert_group(
                [
                    (batch(5, contributor="psA"), Scope.of_contributor("psA")),
                    (forged, Scope.of_contributor("psA")),
                ]
            )
    finally:
        repo.close()
    with psycopg.connect(db.admin_url) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM keystep.batches ORDER BY seq")]
    assert seqs == [1, 2, 3]  # the group with the forged row left nothing behind


def test_the_app_role_cannot_write_or_alter_across_contributors(db: TempDatabase) -> None:
    with connect(db, db.roles.app) as conn:
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SELECT set_config('keystep.contributor', 'psA', true)")
            conn.execute(
                "INSERT INTO batches SELECT 'x', 'd', 99, 'psB', period, t_hour,"
                " manifest_version, redaction_version, kinds, key_id, sha256, size, blob_key,"
                " received_at FROM batches LIMIT 1"
            )
        with conn.transaction():
            conn.execute("SELECT set_config('keystep.contributor', 'psA', true)")
            cur = conn.execute("UPDATE batches SET contributor = 'psA' WHERE contributor = 'psB'")
            assert cur.rowcount == 0
            cur = conn.execute("DELETE FROM batches WHERE contributor = 'psB'")
            assert cur.rowcount == 0
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("UPDATE batches SET contributor = 'psB'")


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE batches DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE batches NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY batches_scope ON batches",
        "CREATE POLICY open ON batches USING (true)",
        "CREATE TABLE keystep.stash (x text)",
        "CREATE TABLE public.stash (x text)",
        "TRUNCATE batches",
    ],
)
def test_the_app_role_cannot_unprotect_anything(db: TempDatabase, statement: str) -> None:
    with connect(db, db.roles.app) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_app_role_cannot_grant_to_public(db: TempDatabase) -> None:
    with connect(db, db.roles.app) as conn:
        conn.execute("GRANT SELECT ON batches TO PUBLIC")  # a warning: "no privileges were granted"
        row = conn.execute(
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a"
            " WHERE c.oid = 'keystep.batches'::regclass AND a.grantee = 0"
        ).fetchone()
        assert row == (0,)


@pytest.mark.parametrize("role", ["auditor", "operator"])
def test_read_only_roles_see_no_contributor_rows(db: TempDatabase, role: str) -> None:
    name = getattr(db.roles, role)
    with connect(db, name) as conn:
        for table in CONTRIBUTOR_TABLES:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")
        assert conn.execute("SELECT halted FROM fleet_state").fetchone() == (False,)
        conn.execute("SELECT * FROM manifests").fetchall()
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE fleet_state SET halted = true")


def test_the_owner_cannot_log_in(db: TempDatabase) -> None:
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(db.url_as(db.roles.owner)).close()


def test_catalog_every_contributor_table_forces_rls_and_nothing_is_public(
    db: TempDatabase,
) -> None:
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'keystep' AND c.relkind = 'r'"
            " AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
            " AND a.attname = 'contributor')"
        ).fetchall()
        assert sorted(r[0] for r in rows) == CONTRIBUTOR_TABLES
        assert all(r[1] and r[2] for r in rows)
        public = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
            " aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a"
            " WHERE n.nspname = 'keystep' AND a.grantee = 0"
        ).fetchall()
        assert public == []
        views = conn.execute(
            "SELECT c.relname, c.reloptions FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'keystep' AND c.relkind = 'v'"
        ).fetchall()
        assert views and all("security_invoker=true" in (opts or []) for _, opts in views)


def test_policies_grant_exactly_the_visibility_table(db: TempDatabase) -> None:
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        rows = dict(
            conn.execute(
                "SELECT tablename, qual FROM pg_policies WHERE schemaname = 'keystep'"
                " AND policyname LIKE '%%_scope'"
            ).fetchall()
        )
    assert sorted(rows) == CONTRIBUTOR_TABLES
    for table, roles in SEES_ALL.items():
        qual = str(rows[table])
        for role in ("collector", "steward", "builder", "contributor"):
            assert (f"'{role}'" in qual) == (role in roles), (table, role)
