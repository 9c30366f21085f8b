"""Initial collector schema: tables, row-level security, policies, grants.

Every table with contributor data has RLS enabled and forced; its policies apply to the
application role only and read two per-transaction settings (``SET LOCAL`` /
``set_config(..., true)``): ``keystep.contributor`` and ``keystep.role``. The sets of roles
that see every contributor's rows are those of ``keystep.store.base.SEES_ALL`` as of this
revision (written out here, as a migration is a snapshot).
"""

from __future__ import annotations

from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEES_ALL = {
    "batches": ("builder",),
    "devices": ("collector", "steward"),
    "enrollment_codes": ("collector", "steward"),
    "consents": ("builder",),
    "lineage": ("builder", "steward"),
}
_WRITERS = {"manifests": ("steward",), "fleet_state": ("steward",)}


def _roles() -> tuple[str, str, str, str]:
    a = context.config.attributes
    return a["schema"], a["app_role"], a["auditor_role"], a["operator_role"]


def _in(roles: tuple[str, ...]) -> str:
    return ", ".join(f"'{r}'" for r in roles)


def upgrade() -> None:
    schema, app, auditor, operator = _roles()
    s = schema
    op.execute(f"""
    CREATE TABLE {s}.batches (
        batch_id text PRIMARY KEY,
        device text NOT NULL,
        seq bigint NOT NULL CHECK (seq >= 0),
        contributor text NOT NULL,
        period text NOT NULL,
        t_hour text NOT NULL,
        manifest_version integer NOT NULL,
        redaction_version text NOT NULL,
        kinds text[] NOT NULL,
        key_id text NOT NULL,
        sha256 text NOT NULL,
        size bigint NOT NULL,
        blob_key text NOT NULL,
        received_at timestamptz NOT NULL,
        UNIQUE (device, seq)
    );
    CREATE INDEX batches_contributor ON {s}.batches (contributor, t_hour, seq);
    CREATE TABLE {s}.devices (
        device_id text PRIMARY KEY,
        contributor text NOT NULL,
        public_key bytea NOT NULL,
        credential_hash text NOT NULL,
        enrolled_at timestamptz NOT NULL,
        revoked_at timestamptz
    );
    CREATE TABLE {s}.enrollment_codes (
        code_hash text PRIMARY KEY,
        contributor text NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        used_at timestamptz
    );
    CREATE TABLE {s}.consents (
        contributor text NOT NULL,
        manifest_version integer NOT NULL,
        manifest_digest text NOT NULL,
        given_at timestamptz NOT NULL,
        withdrawn_at timestamptz,
        PRIMARY KEY (contributor, manifest_version)
    );
    CREATE TABLE {s}.lineage (
        dataset_id text NOT NULL,
        batch_id text NOT NULL,
        contributor text NOT NULL,
        PRIMARY KEY (dataset_id, batch_id)
    );
    CREATE INDEX lineage_contributor ON {s}.lineage (contributor);
    CREATE TABLE {s}.manifests (
        version integer PRIMARY KEY,
        yaml_text text NOT NULL,
        digest text NOT NULL,
        published_at timestamptz NOT NULL
    );
    CREATE TABLE {s}.fleet_state (
        id integer PRIMARY KEY CHECK (id = 1),
        halted boolean NOT NULL,
        generation bigint NOT NULL,
        changed_at timestamptz,
        changed_by text
    );
    INSERT INTO {s}.fleet_state VALUES (1, false, 0, NULL, NULL);
    CREATE VIEW {s}.contributor_datasets WITH (security_invoker = true) AS
        SELECT DISTINCT dataset_id, contributor FROM {s}.lineage;
    """)
    for table, roles in _SEES_ALL.items():
        cond = (
            "contributor = current_setting('keystep.contributor', true)"
            f" OR current_setting('keystep.role', true) IN ({_in(roles)})"
        )
        op.execute(f"""
        ALTER TABLE {s}.{table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {s}.{table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY {table}_scope ON {s}.{table} TO {app} USING ({cond}) WITH CHECK ({cond});
        GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.{table} TO {app};
        """)
    for table, roles in _WRITERS.items():
        writer = f"current_setting('keystep.role', true) IN ({_in(roles)})"
        op.execute(f"""
        ALTER TABLE {s}.{table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {s}.{table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY {table}_read ON {s}.{table} FOR SELECT TO {app}, {auditor}, {operator}
            USING (true);
        CREATE POLICY {table}_insert ON {s}.{table} FOR INSERT TO {app} WITH CHECK ({writer});
        CREATE POLICY {table}_update ON {s}.{table} FOR UPDATE TO {app}
            USING ({writer}) WITH CHECK ({writer});
        GRANT SELECT ON {s}.{table} TO {auditor}, {operator};
        """)
    op.execute(f"""
    GRANT SELECT, INSERT ON {s}.manifests TO {app};
    GRANT SELECT, UPDATE ON {s}.fleet_state TO {app};
    GRANT SELECT ON {s}.contributor_datasets TO {app};
    GRANT SELECT ON {s}.alembic_version TO {auditor}, {operator};
    """)


def downgrade() -> None:
    s = _roles()[0]
    op.execute(f"DROP VIEW {s}.contributor_datasets")
    for table in (*_SEES_ALL, *_WRITERS):
        op.execute(f"DROP TABLE {s}.{table}")
