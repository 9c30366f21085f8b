"""The audit log itself: a broken chain means someone may have hidden an access."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from keystep.audit.log import Checkpoint, verify
from keystep.exposure.base import Check, Finding, ScanContext


class AuditChainCheck(Check):
    name = "audit-chain"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        if ctx.keystore is None or not ctx.keystore.exists() or ctx.vault_dir is None:
            return
        audit_dir = ctx.vault_dir / "audit"
        if not (audit_dir / "audit.jsonl").exists():
            yield self.finding(
                audit_dir,
                "the audit log is missing",
                "restore it from backup; investigate who removed it",
            )
            return
        db = sqlite3.connect(f"file:{ctx.keystore}?mode=ro", uri=True)
        try:
            meta = dict(
                db.execute(
                    "SELECT name, value FROM meta"
                    " WHERE name IN ('audit_public_key', 'audit_anchor')"
                ).fetchall()
            )
        finally:
            db.close()
        public = meta.get("audit_public_key")
        if public is None:
            return
        anchor = Checkpoint.from_json(meta["audit_anchor"]) if meta.get("audit_anchor") else None
        report = verify(audit_dir, bytes(public), anchor=anchor)
        for problem in report.problems:
            yield self.finding(
                audit_dir,
                f"audit log does not verify: {problem}",
                "keystep audit verify; restore the log from backup and investigate",
            )
