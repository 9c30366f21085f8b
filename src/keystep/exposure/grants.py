"""Grants in the key store: each has an expiry, none outlives it, break-glass is closed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from keystep.audit.events import parse_time
from keystep.exposure.base import Check, Finding, ScanContext
from keystep.policy.model import GRANT_MAX as MAX_GRANT


def _rows(ctx: ScanContext, sql: str) -> list[tuple[object, ...]]:
    if ctx.keystore is None or not ctx.keystore.exists():
        return []
    db = sqlite3.connect(f"file:{ctx.keystore}?mode=ro", uri=True)
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


def _time(value: object) -> datetime | None:
    try:
        return parse_time(str(value)) if value else None
    except ValueError:
        return None


class GrantExpiryCheck(Check):
    name = "grant-expiry"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        for gid, principal, purpose, expires, created in _rows(
            ctx,
            "SELECT grant_id, principal, purpose, expires, created FROM grants"
            " WHERE kind = 'grant' AND revoked IS NULL",
        ):
            where = f"grant {gid} ({principal}, {purpose})"
            end, start = _time(expires), _time(created)
            fix = f"keystep grant revoke {gid}, then grant again with an expiry"
            if end is None:
                yield self.finding(where, "grant has no (readable) expiry", fix)
            elif end <= ctx.now:
                yield self.finding(
                    where,
                    f"grant expired {end:%Y-%m-%d} but is still on record",
                    f"keystep maintain (or keystep grant revoke {gid})",
                )
            elif start is not None and end - start > MAX_GRANT:
                yield self.finding(
                    where,
                    f"grant runs until {end:%Y-%m-%d}, more than "
                    f"{MAX_GRANT.days} days: effectively without expiry",
                    fix,
                )


class BreakGlassCheck(Check):
    name = "break-glass"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        for gid, principal, contributor, expires in _rows(
            ctx,
            "SELECT grant_id, principal, contributor, expires FROM grants"
            " WHERE kind = 'break-glass' AND revoked IS NULL",
        ):
            end = _time(expires)
            if end is None or end > ctx.now:
                until = f"until {end:%Y-%m-%d %H:%M}Z" if end else "with no readable expiry"
                yield self.finding(
                    f"break-glass {gid} ({principal} → {contributor})",
                    f"raw access is open {until}",
                    f"close it when the investigation ends: keystep grant revoke {gid}",
                )
            else:
                yield self.finding(
                    f"break-glass {gid}",
                    "expired but never closed",
                    f"keystep maintain (or keystep grant revoke {gid})",
                )
