"""Exposure checks of the collector's PostgreSQL database, read from the system catalogs.

They connect with ``ScanContext.db_url`` — the collector's own connection string — and judge
both that connection's role and every table, view and grant around it: a table holding
contributor data must have row-level security enabled and forced, with a policy keyed on
``keystep.contributor``; nothing is granted to PUBLIC; views run as their invoker; and the
collector's role is neither owner, superuser nor able to bypass RLS. The catalogs are
readable by any role, so the scan needs no privilege it would itself report.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from keystep.exposure.base import Check, Finding, ScanContext

# A column of one of these names marks a table as holding contributor data.
CONTRIBUTOR_COLUMNS: Final = ("contributor", "pseudonym", "contributor_id")
_USER_SCHEMAS: Final = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%'"
)


@contextmanager
def _connect(url: str) -> Iterator[Any]:
    import psycopg  # the embedded scan never loads the PostgreSQL driver

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        yield conn


def _contributor_tables(conn: Any) -> list[tuple[str, str, bool, bool, int]]:
    """(schema, table, rls enabled, rls forced, owner oid) of tables with contributor data."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relowner"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE c.relkind IN ('r', 'p') AND {_USER_SCHEMAS}"
        " AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
        " AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY(%s))"
        " ORDER BY 1, 2",
        (list(CONTRIBUTOR_COLUMNS),),
    ).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


class PostgresCheck(Check):
    """A check that runs only when the scan is given a PostgreSQL URL."""

    name = "postgres"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        url = ctx.db_url
        if not url or not url.startswith(("postgresql://", "postgres://")):
            return []
        with _connect(url) as conn:
            return list(self.inspect(conn))

    @abstractmethod
    def inspect(self, conn: Any) -> Iterable[Finding]:
        """Yield the findings read from an open connection."""


class PostgresRoleCheck(PostgresCheck):
    """The role the collector connects as must be subject to every policy."""

    name = "postgres-role"

    def inspect(self, conn: Any) -> Iterable[Finding]:
        user, superuser, bypass = conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        where = f"role {user}"
        if superuser:
            yield self.finding(
                where,
                "the collector connects as a superuser, which ignores row-level security",
                "connect as the application role (keystep serve --db with <prefix>_app)",
            )
        if bypass:
            yield self.finding(
                where,
                "the collector's role has BYPASSRLS",
                f"ALTER ROLE {user} NOBYPASSRLS",
            )
        owned = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE c.relkind IN ('r', 'p', 'v', 'm') AND {_USER_SCHEMAS}"
            " AND pg_has_role(current_user, c.relowner, 'MEMBER') ORDER BY 1"
        ).fetchall()
        if owned and not superuser:
            names = ", ".join(r[0] for r in owned[:5])
            yield self.finding(
                where,
                f"the collector's role owns (or is a member of the owner of) {names}: an owner"
                " can disable row-level security",
                "give the tables to the NOLOGIN owner role and revoke its membership",
            )


class PostgresRowSecurityCheck(PostgresCheck):
    """Every table with contributor data: RLS on, forced, and a policy keyed on the contributor."""

    name = "postgres-rls"

    def inspect(self, conn: Any) -> Iterable[Finding]:
        policies: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        for schema, table, name, qual, check in conn.execute(
            "SELECT schemaname, tablename, policyname, coalesce(qual, ''),"
            " coalesce(with_check, '') FROM pg_policies"
        ).fetchall():
            policies.setdefault((schema, table), []).append((name, qual, check))
        for schema, table, enabled, forced, _ in _contributor_tables(conn):
            where = f"table {schema}.{table}"
            if not enabled:
                yield self.finding(
                    where,
                    "holds contributor data without row-level security",
                    f"ALTER TABLE {schema}.{table} ENABLE ROW LEVEL SECURITY",
                )
            elif not forced:
                yield self.finding(
                    where,
                    "row-level security is not forced, so the table owner bypasses it",
                    f"ALTER TABLE {schema}.{table} FORCE ROW LEVEL SECURITY",
                )
            mine = policies.get((schema, table), [])
            if enabled and not mine:
                yield self.finding(
                    where,
                    "row-level security has no policy (the collector can read nothing)",
                    "run the migrations: keystep serve creates the policies",
                )
            for name, qual, check in mine:
                for text in (qual, check):
                    if text and "keystep.contributor" not in text:
                        yield self.finding(
                            where,
                            f"policy {name} does not restrict rows to the session's contributor",
                            f"DROP POLICY {name} ON {schema}.{table}",
                        )
                        break


class PostgresGrantsCheck(PostgresCheck):
    """Nothing to PUBLIC; contributor tables to nobody but their owner and the collector."""

    name = "postgres-grants"

    def inspect(self, conn: Any) -> Iterable[Finding]:
        for kind, name, priv in conn.execute(
            "SELECT c.relkind, n.nspname || '.' || c.relname, a.privilege_type FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace,"
            " aclexplode(c.relacl) a"
            f" WHERE {_USER_SCHEMAS} AND a.grantee = 0 ORDER BY 2, 3"
        ).fetchall():
            yield self.finding(
                f"{'view' if kind == 'v' else 'relation'} {name}",
                f"{priv} is granted to PUBLIC",
                f"REVOKE ALL ON {name} FROM PUBLIC",
            )
        for name, priv in conn.execute(
            "SELECT n.nspname, a.privilege_type FROM pg_namespace n,"
            " aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a"
            f" WHERE {_USER_SCHEMAS} AND a.grantee = 0 ORDER BY 1, 2"
        ).fetchall():
            yield self.finding(
                f"schema {name}",
                f"{priv} is granted to PUBLIC",
                f"REVOKE ALL ON SCHEMA {name} FROM PUBLIC",
            )
        for (priv,) in conn.execute(
            "SELECT a.privilege_type FROM pg_database d,"
            " aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
            " WHERE d.datname = current_database() AND a.grantee = 0"
            " AND a.privilege_type IN ('CONNECT', 'CREATE') ORDER BY 1"
        ).fetchall():
            yield self.finding(
                "database",
                f"{priv} is granted to PUBLIC",
                "REVOKE ALL ON DATABASE <name> FROM PUBLIC",
            )
        for name in conn.execute(
            "SELECT n.nspname || '.' || p.proname FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace,"
            " aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
            f" WHERE {_USER_SCHEMAS} AND n.nspname <> 'public' AND a.grantee = 0 ORDER BY 1"
        ).fetchall():
            yield self.finding(
                f"function {name[0]}",
                "EXECUTE is granted to PUBLIC",
                f"REVOKE EXECUTE ON FUNCTION {name[0]} FROM PUBLIC",
            )
        (me,) = conn.execute("SELECT oid FROM pg_roles WHERE rolname = current_user").fetchone()
        for schema, table, _, _, owner in _contributor_tables(conn):
            for grantee, privs in conn.execute(
                "SELECT pg_get_userbyid(a.grantee), string_agg(a.privilege_type, ', ')"
                " FROM pg_class c, aclexplode(c.relacl) a"
                " WHERE c.oid = %s::regclass AND a.grantee NOT IN (0, %s, %s)"
                " GROUP BY 1 ORDER BY 1",
                (f'"{schema}"."{table}"', owner, me),
            ).fetchall():
                yield self.finding(
                    f"table {schema}.{table}",
                    f"role {grantee} holds {privs} on contributor data",
                    f"REVOKE ALL ON {schema}.{table} FROM {grantee}",
                )


class PostgresViewsCheck(PostgresCheck):
    """A view that runs as its owner reads past the caller's row-level security."""

    name = "postgres-views"

    def inspect(self, conn: Any) -> Iterable[Finding]:
        for name, options in conn.execute(
            "SELECT n.nspname || '.' || c.relname, c.reloptions FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE c.relkind = 'v' AND {_USER_SCHEMAS} ORDER BY 1"
        ).fetchall():
            if "security_invoker=true" not in (options or []):
                yield self.finding(
                    f"view {name}",
                    "runs with its owner's rights (not security_invoker)",
                    f"ALTER VIEW {name} SET (security_invoker = true)",
                )


def postgres_checks() -> list[Check]:
    return [
        PostgresRoleCheck(),
        PostgresRowSecurityCheck(),
        PostgresGrantsCheck(),
        PostgresViewsCheck(),
    ]
