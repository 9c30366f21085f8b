"""PostgreSQL exposure checks: a provisioned database is clean, and each way of breaking its
hardening (injected here, one per test) is reported by the check meant to catch it."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from keystep.exposure.base import ScanContext, scan
from keystep.exposure.postgres import postgres_checks
from keystep.store.pg_admin import TempDatabase, temporary_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def db() -> Iterator[TempDatabase]:
    with temporary_database() as d:
        yield d


def findings(url: str) -> list[tuple[str, str, str]]:
    report = scan(ScanContext(db_url=url), postgres_checks())
    return [(f.check, f.where, f.problem) for f in report.findings]


def admin(db: TempDatabase, *statements: str) -> None:
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        for s in statements:
            conn.execute(s.format(app=db.roles.app, owner=db.roles.owner, auditor=db.roles.auditor))


def test_a_provisioned_database_is_clean(db: TempDatabase) -> None:
    assert findings(db.app_url) == []


def test_nothing_to_scan_without_a_postgres_url() -> None:
    assert scan(ScanContext(db_url=None), postgres_checks()).clean
    assert scan(ScanContext(db_url="sqlite:////tmp/x"), postgres_checks()).clean


MUTATIONS = [
    ("grant to PUBLIC", ["GRANT SELECT ON keystep.batches TO PUBLIC"],
     "postgres-grants", "relation keystep.batches", "granted to PUBLIC"),
    ("schema open to PUBLIC", ["GRANT USAGE ON SCHEMA keystep TO PUBLIC"],
     "postgres-grants", "schema keystep", "USAGE is granted to PUBLIC"),
    ("database open to PUBLIC", ["GRANT CONNECT ON DATABASE {db} TO PUBLIC"],
     "postgres-grants", "database", "CONNECT is granted to PUBLIC"),
    ("function executable by PUBLIC",
     ["CREATE FUNCTION keystep.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
      "GRANT EXECUTE ON FUNCTION keystep.f() TO PUBLIC"],
     "postgres-grants", "function keystep.f", "EXECUTE"),
    ("reader role granted contributor rows", ["GRANT SELECT ON keystep.consents TO {auditor}"],
     "postgres-grants", "table keystep.consents", "holds SELECT on contributor data"),
    ("RLS off", ["ALTER TABLE keystep.consents DISABLE ROW LEVEL SECURITY"],
     "postgres-rls", "table keystep.consents", "without row-level security"),
    ("RLS not forced", ["ALTER TABLE keystep.devices NO FORCE ROW LEVEL SECURITY"],
     "postgres-rls", "table keystep.devices", "not forced"),
    ("policy dropped", ["DROP POLICY lineage_scope ON keystep.lineage"],
     "postgres-rls", "table keystep.lineage", "has no policy"),
    ("permissive policy", ["CREATE POLICY open ON keystep.batches TO {app} USING (true)"],
     "postgres-rls", "table keystep.batches", "policy open does not restrict"),
    ("new table with contributor data and no RLS",
     ["CREATE TABLE keystep.notes (contributor text, body text)",
      "GRANT SELECT ON keystep.notes TO {app}"],
     "postgres-rls", "table keystep.notes", "without row-level security"),
    ("definer view", ["CREATE VIEW keystep.leak AS SELECT * FROM keystep.batches"],
     "postgres-views", "view keystep.leak", "owner's rights"),
    ("invoker switched off",
     ["ALTER VIEW keystep.contributor_datasets SET (security_invoker = false)"],
     "postgres-views", "view keystep.contributor_datasets", "owner's rights"),
    ("BYPASSRLS", ["ALTER ROLE {app} BYPASSRLS"],
     "postgres-role", "role", "BYPASSRLS"),
    ("app role owns a table", ["ALTER TABLE keystep.batches OWNER TO {app}"],
     "postgres-role", "role", "owns"),
    ("app role in the owner role", ["GRANT {owner} TO {app}"],
     "postgres-role", "role", "owns"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("statements", "check", "where", "problem"),
    [m[1:] for m in MUTATIONS],
    ids=[m[0] for m in MUTATIONS],
)
def test_each_mutation_is_reported(
    db: TempDatabase, statements: list[str], check: str, where: str, problem: str
) -> None:
    admin(db, *(s.replace("{db}", db.database) for s in statements))
    found = findings(db.app_url)
    assert any(c == check and w.startswith(where) and problem in p for c, w, p in found), found


def test_connecting_as_superuser_is_reported(db: TempDatabase) -> None:
    found = findings(db.admin_url)
    assert ("postgres-role", "role postgres") in [(c, w) for c, w, _ in found]
    assert any("superuser" in p for _, _, p in found)
