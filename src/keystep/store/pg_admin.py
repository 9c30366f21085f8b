"""PostgreSQL administration: start the local server, create the roles and database, migrate.

The roles (``<prefix>_owner`` owns the schema and is NOLOGIN; ``<prefix>_app`` is what the
collector logs in as: not owner, not superuser, NOBYPASSRLS; ``<prefix>_auditor`` and
``<prefix>_operator`` read only tables without contributor data) are created here, the
tables, policies and grants by the Alembic migrations in ``migrations/``.

``python -m keystep.store.pg_admin ensure-server`` makes a local server answer on
127.0.0.1:5432 (starting the Debian cluster, or installing it when absent): ``make test``
calls it first.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ADMIN_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
SCHEMA: Final = "keystep"
_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
MIGRATIONS: Final = Path(__file__).with_name("migrations")


class PgAdminError(RuntimeError):
    pass


@dataclass(frozen=True)
class Roles:
    prefix: str = "keystep"

    def __post_init__(self) -> None:
        if not _NAME.match(self.prefix):
            raise PgAdminError(f"bad role prefix {self.prefix!r}")

    @property
    def owner(self) -> str:
        return f"{self.prefix}_owner"

    @property
    def app(self) -> str:
        return f"{self.prefix}_app"

    @property
    def auditor(self) -> str:
        return f"{self.prefix}_auditor"

    @property
    def operator(self) -> str:
        return f"{self.prefix}_operator"

    @property
    def readers(self) -> tuple[str, str]:
        return (self.auditor, self.operator)


def with_database(url: str, database: str, *, user: str | None = None) -> str:
    """``url`` pointed at another database (and, optionally, another user)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{quote(user)}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + database, parts.query, parts.fragment))


def server_answers(url: str = ADMIN_URL, timeout: float = 2.0) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout))):
            return True
    except psycopg.OperationalError:
        return False


def ensure_server(url: str = ADMIN_URL, *, wait_s: float = 30.0, install: bool = True) -> None:
    """Make the local Debian cluster answer: start it, or install it first when absent."""
    if server_answers(url):
        return
    if shutil.which("pg_ctlcluster") is None:
        if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise PgAdminError("PostgreSQL is not installed (apt-get install postgresql)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env)
        _trust_loopback()
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)
    if not versions:
        raise PgAdminError("no PostgreSQL cluster under /etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if server_answers(url):
            return
        time.sleep(0.5)
    raise PgAdminError(f"PostgreSQL did not answer at {url} within {wait_s:.0f} s")


def _trust_loopback() -> None:
    """Development and CI machines only: the test suite connects over loopback without secrets."""
    for hba in Path("/etc/postgresql").glob("*/main/pg_hba.conf"):
        text = hba.read_text()
        line = "host all all 127.0.0.1/32 trust\n"
        if line not in text:
            hba.write_text(line + text)


def create_roles(admin_url: str, roles: Roles, *, app_password: str | None = None) -> None:
    """Create the four roles if absent, with exactly the attributes the hardening needs."""
    specs = {
        roles.owner: "NOLOGIN",
        roles.app: "LOGIN",
        roles.auditor: "LOGIN",
        roles.operator: "LOGIN",
    }
    common = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name, login in specs.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(f"{verb} ROLE {{}} {login} {common}").format(sql.Identifier(name)))
        if app_password is not None:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(roles.app), sql.Literal(app_password)
                )
            )


def create_database(admin_url: str, database: str, roles: Roles) -> None:
    """The database and its ``keystep`` schema, owned by the owner role, closed to PUBLIC."""
    if not _NAME.match(database):
        raise PgAdminError(f"bad database name {database!r}")
    ident = sql.Identifier
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(database), ident(roles.owner))
            )
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(database)))
        for r in (roles.app, *roles.readers):
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(database), ident(r))
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                    ident(r), ident(database), ident(SCHEMA)
                )
            )
    with psycopg.connect(with_database(admin_url, database), autocommit=True) as conn:
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                ident(SCHEMA), ident(roles.owner)
            )
        )
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}, {}").format(
                ident(SCHEMA), ident(roles.app), ident(roles.auditor), ident(roles.operator)
            )
        )
        # Functions are executable by PUBLIC by default; none of ours should be.
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC"
            ).format(ident(roles.owner))
        )


def migrate(admin_url: str, database: str, roles: Roles, *, revision: str = "head") -> None:
    """Run the Alembic migrations as the owner role (``SET ROLE``), so it owns every object."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    engine = create_engine(_sqlalchemy_url(with_database(admin_url, database)))
    try:
        with engine.begin() as conn:
            conn.execute(text(f'SET ROLE "{roles.owner}"'))
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes.update(
                connection=conn,
                schema=SCHEMA,
                app_role=roles.app,
                auditor_role=roles.auditor,
                operator_role=roles.operator,
            )
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def _sqlalchemy_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url


def provision(
    admin_url: str = ADMIN_URL,
    *,
    database: str = "keystep",
    roles: Roles | None = None,
    app_password: str | None = None,
) -> str:
    """Roles, database, schema and migrations; returns the URL the collector connects with."""
    roles = roles or Roles()
    create_roles(admin_url, roles, app_password=app_password)
    create_database(admin_url, database, roles)
    migrate(admin_url, database, roles)
    url = with_database(admin_url, database, user=roles.app)
    if app_password is not None:
        parts = urlsplit(url)
        netloc = f"{quote(roles.app)}:{quote(app_password)}@{parts.netloc.rsplit('@', 1)[-1]}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def drop(admin_url: str = ADMIN_URL, *, database: str, roles: Roles) -> None:
    """Drop the database and the roles (tests clean up after themselves)."""
    ident = sql.Identifier
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(database)))
        for r in (roles.app, roles.auditor, roles.operator, roles.owner):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (r,)).fetchone():
                # Privileges in other databases would block DROP ROLE; ours are gone with the db.
                conn.execute(sql.SQL("DROP ROLE {}").format(ident(r)))


@dataclass(frozen=True)
class TempDatabase:
    app_url: str  # the collector's connection: the app role
    admin_url: str  # superuser, same database: for tests that inspect or tamper
    database: str
    roles: Roles

    def url_as(self, role: str) -> str:
        return with_database(self.admin_url, self.database, user=role)


@contextmanager
def temporary_database(
    admin_url: str = ADMIN_URL, *, prefix: str | None = None
) -> Iterator[TempDatabase]:
    """A provisioned database with its own roles, dropped afterwards (tests, benchmarks)."""
    prefix = prefix or f"ks_t{secrets.token_hex(4)}"
    roles = Roles(prefix)
    ensure_server(admin_url)
    try:
        app_url = provision(admin_url, database=prefix, roles=roles)
        yield TempDatabase(app_url, with_database(admin_url, prefix), prefix, roles)
    finally:
        drop(admin_url, database=prefix, roles=roles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keystep.store.pg_admin")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ensure-server", help="start (or install) the local PostgreSQL server")
    p = sub.add_parser("provision", help="create roles, database and schema; print the app URL")
    p.add_argument("--admin-url", default=ADMIN_URL)
    p.add_argument("--database", default="keystep")
    p.add_argument("--prefix", default="keystep")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "ensure-server":
            ensure_server()
        else:
            print(provision(args.admin_url, database=args.database, roles=Roles(args.prefix)))
    except (PgAdminError, psycopg.Error, subprocess.CalledProcessError) as exc:
        print(f"pg_admin: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
