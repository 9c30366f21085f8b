"""Alembic environment for the collector's PostgreSQL schema; run only programmatically.

``keystep.store.pg_admin.migrate`` hands over a live connection (already ``SET ROLE`` to the
owner role) and the role names in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    version_table_schema=config.attributes["schema"],
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
