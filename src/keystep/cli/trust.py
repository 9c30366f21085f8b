"""`keystep audit …`, `erase`, `maintain`, `grant …`, `hold …`: the trust core's commands.

In the embedded deployment one person holds every role on their own machine, so each
command acts under the least role that can do it (auditor to read the log, operator to run
retention, steward to grant) and every action lands in the audit log under that role.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from keystep.audit.events import AuditEvent, format_time
from keystep.cli.common import home_of, interactive
from keystep.exposure import context_for_home, default_checks, scan
from keystep.home import Home
from keystep.policy.model import SEALED_BATCHES, BreakGlass, Grant, PolicyError, Principal
from keystep.vault.base import Vault
from keystep.vault.local import EMBEDDED_STEWARD, LocalVault

AUDITOR: Final = Principal("local-auditor", "auditor")
OPERATOR: Final = Principal("local-operator", "operator")


class TrustUsageError(ValueError):
    """Bad usage found after parsing; main maps it to exit status 2."""


def open_vault(home: Home) -> Vault:
    """The vault named by the home's ``config.json``: ``{"kind": "local", "path": …}`` or
    ``{"kind": "remote", "url": …, "token_file": …}``."""
    cfg = home.read_config()["vault"]
    if cfg.get("kind", "local") == "remote":
        from keystep.vault.remote import RemoteVault

        return RemoteVault.from_config(cfg)
    return LocalVault.open(Path(cfg["path"]))


def _usage(message: str) -> int:
    print(f"keystep: error: {message}", file=sys.stderr)
    return 2


def _now(args: argparse.Namespace) -> datetime:
    raw = getattr(args, "now", None)
    if not raw:
        return datetime.now(UTC)
    t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _event_line(e: AuditEvent) -> str:
    d = e.to_dict()
    who = f"{e.principal} ({e.role})"
    purpose = f" for {e.purpose}" if e.purpose else ""
    extra = {
        k: v
        for k, v in d.items()
        if k not in ("event", "t", "principal", "role", "purpose", "contributor")
        and v not in (None, "", [])
    }
    detail = " ".join(f"{k}={v}" for k, v in extra.items())
    return f"{format_time(e.t)[:19]}Z  {e.name:<20} {who}{purpose}  {detail}".rstrip()


# -- audit ---------------------------------------------------------------------------------


def run_audit_verify(args: argparse.Namespace) -> int:
    home = home_of(args)
    vault = open_vault(home)
    try:
        report = vault.verify_audit(principal=AUDITOR)
    finally:
        vault.close()
    if getattr(args, "json", False):
        print(
            json.dumps(
                {
                    "version": 1,
                    "ok": report.ok,
                    "entries": report.entries,
                    "checkpoints": report.checkpoints,
                    "problems": report.problems,
                }
            )
        )
    elif report.ok:
        print(f"audit log OK: {report.entries} entries, {report.checkpoints} signed checkpoints")
    else:
        for p in report.problems:
            print(f"audit log FAILED: {p}")
    return 0 if report.ok else 1


def run_audit_log(args: argparse.Namespace) -> int:
    """Without --contributor: the whole log (auditor). With it: that person's access feed."""
    home = home_of(args)
    cfg = home.read_config()
    vault = open_vault(home)
    try:
        if args.contributor:
            if args.contributor == cfg.get("contributor_id"):
                who, purpose = Principal(args.contributor, "contributor"), "contributor-access"
            else:
                who, purpose = AUDITOR, "security-investigation"
            events = vault.feed(vault.pseudonym(args.contributor), principal=who, purpose=purpose)
        else:
            events = vault.read_audit(principal=AUDITOR, purpose="security-investigation")
    finally:
        vault.close()
    for e in events:
        print(json.dumps(e.to_dict(), sort_keys=True) if args.json else _event_line(e))
    return 0


def run_audit_exposure(args: argparse.Namespace) -> int:
    home = home_of(args)
    ctx = context_for_home(home.root, home.read_config())
    checks = default_checks()
    db_url = getattr(args, "db", None)
    if db_url:
        ctx.db_url = db_url
        try:
            from keystep.exposure.postgres import postgres_checks
        except ImportError:
            return _usage("PostgreSQL checks are not available in this installation")
        checks += postgres_checks()
    report = scan(ctx, checks)
    if args.json:
        print(report.to_json())
    else:
        for line in report.lines():
            print(line)
        if report.clean:
            print(f"no exposure found ({len(report.checks)} checks)")
    return 0 if report.clean else 1


# -- erasure and retention -----------------------------------------------------------------


def _erase_stores(home: Home, pseudonym: str, *, own: bool) -> tuple[int, int, list[str]]:
    """Delete the contributor's blobs, metadata and outbox rows; return lineage datasets."""
    from keystep.store.base import Scope
    from keystep.store.blobs import FolderBlobStore
    from keystep.store.sqlite import SqliteRepository

    blobs_deleted = rows_deleted = 0
    datasets: list[str] = []
    if home.collector_db.exists():
        repo = SqliteRepository(home.collector_db)
        try:
            scope = Scope.of_contributor(pseudonym)
            batches = repo.list_batches(scope=scope, contributor=pseudonym)
            store = FolderBlobStore(home.blobs_dir)
            for b in batches:
                blobs_deleted += store.delete(b.blob_key)
            rows_deleted = len(repo.delete_batches([b.batch_id for b in batches], scope=scope))
            datasets = repo.datasets_of(pseudonym, scope=Scope.steward())
        finally:
            repo.close()
    if own and home.outbox_db.exists():
        from keystep.outbox.sqlite import Outbox

        outbox = Outbox(home.outbox_db)
        try:
            rows_deleted += len(outbox.forget(float("-inf"), float("inf")))
        finally:
            outbox.close()
    return blobs_deleted, rows_deleted, datasets


def run_erase(args: argparse.Namespace) -> int:
    home = home_of(args)
    cfg = home.read_config()
    contributor = args.contributor or cfg.get("contributor_id")
    if not contributor:
        return _usage("name the contributor: keystep erase --contributor ID")
    own = contributor == cfg.get("contributor_id")
    if not args.yes:
        if not interactive():
            return _usage("erasure cannot be undone; add --yes to confirm")
        answer = input(f"Erase every key and batch of {contributor}? Type 'yes': ")
        if answer.strip().lower() != "yes":
            print("nothing erased")
            return 1
    if own:
        # Erasing yourself withdraws consent first, so a running recorder stops before the
        # keys go and nothing new is sealed to a key about to be destroyed.
        from keystep.capture.consent import withdraw_consent

        withdraw_consent(home)
    vault = open_vault(home)
    try:
        pseudonym = vault.pseudonym(contributor)
        by = Principal(contributor, "contributor") if own else EMBEDDED_STEWARD
        keys = vault.erase_contributor(pseudonym, by=by, justification="keystep erase")
    finally:
        vault.close()
    blobs, rows, datasets = _erase_stores(home, pseudonym, own=own)
    print(
        f"erased {contributor} ({pseudonym}): {keys} period keys and the key-encryption key "
        f"destroyed; {blobs} blobs and {rows} rows deleted"
    )
    print("every copy of their sealed batches, backups included, can no longer be opened")
    if datasets:
        print("released datasets that contain them (rebuild each: keystep export --rebuild ID):")
        for d in datasets:
            print(f"  {d}")
    return 0


def run_maintain(args: argparse.Namespace) -> int:
    home = home_of(args)
    now = _now(args)
    vault = open_vault(home)
    try:
        expired = vault.expire_periods(now, by=OPERATOR)
        ended = vault.end_expired_grants(by=EMBEDDED_STEWARD)
        vault.checkpoint()
    finally:
        vault.close()
    for pseudonym, period in expired:
        print(f"retention: destroyed the key of {pseudonym} for {period}")
    for gid in ended:
        print(f"grant {gid} expired and was ended")
    if not expired and not ended:
        print("nothing to expire")
    return 0


# -- grants and legal holds ----------------------------------------------------------------


def _grant_line(g: Grant | BreakGlass, now: datetime) -> str:
    state = "active" if g.active(now) else "ended"
    if isinstance(g, Grant):
        scope = g.contributor or "all contributors"
        return (
            f"{g.grant_id}  {state:<6} {g.principal} ({g.role}) {g.purpose} {g.data_class} "
            f"[{scope}] until {g.expires:%Y-%m-%d %H:%M}Z by {g.created_by}"
        )
    return (
        f"{g.grant_id}  {state:<6} break-glass {g.principal} → {g.contributor} until "
        f"{g.expires:%Y-%m-%d %H:%M}Z approved by {' and '.join(g.approvers)}: "
        f"{g.justification}"
    )


def run_grant_list(args: argparse.Namespace) -> int:
    vault = open_vault(home_of(args))
    try:
        now = datetime.now(UTC)
        for g in vault.grants():
            print(_grant_line(g, now))
    finally:
        vault.close()
    return 0


def run_grant_create(args: argparse.Namespace) -> int:
    home = home_of(args)
    vault = open_vault(home)
    try:
        pseudonym = vault.pseudonym(args.contributor) if args.contributor else None
        try:
            g = vault.create_grant(
                Principal(args.principal, args.role),
                args.purpose,
                args.data_class,
                expires=datetime.now(UTC) + timedelta(days=args.days),
                by=EMBEDDED_STEWARD,
                contributor=pseudonym,
                justification=args.why or "",
            )
        except PolicyError as exc:
            return _usage(str(exc))
    finally:
        vault.close()
    print(_grant_line(g, datetime.now(UTC)))
    return 0


def run_grant_builder(args: argparse.Namespace) -> int:
    """Renew the embedded deployment's builder grant (for ``keystep export``)."""
    home = home_of(args)
    cfg = home.read_config()
    vault = open_vault(home)
    try:
        if not isinstance(vault, LocalVault):
            return _usage("the builder grant is renewed on the vault server")
        g = vault.ensure_embedded_grants(pseudonym=cfg["pseudonym"], days=args.days)
    finally:
        vault.close()
    print(_grant_line(g, datetime.now(UTC)) if g else "an active builder grant exists")
    return 0


def run_grant_revoke(args: argparse.Namespace) -> int:
    vault = open_vault(home_of(args))
    try:
        vault.revoke_grant(args.grant_id, by=EMBEDDED_STEWARD, justification=args.why or "")
    finally:
        vault.close()
    print(f"{args.grant_id} ended")
    return 0


def run_break_glass(args: argparse.Namespace) -> int:
    if len(set(args.approver)) != 2:
        return _usage("break-glass needs exactly two different approving stewards (--approver)")
    vault = open_vault(home_of(args))
    try:
        a, b = (Principal(n, "steward") for n in args.approver)
        try:
            bg = vault.open_break_glass(
                Principal(args.steward, "steward"),
                vault.pseudonym(args.contributor),
                approvers=(a, b),
                justification=args.justification,
                expires=datetime.now(UTC) + timedelta(hours=args.hours),
            )
        except PolicyError as exc:
            return _usage(str(exc))
    finally:
        vault.close()
    print(_grant_line(bg, datetime.now(UTC)))
    print("the contributor sees this in their access feed (keystep audit log --contributor)")
    return 0


def run_hold_set(args: argparse.Namespace) -> int:
    vault = open_vault(home_of(args))
    try:
        vault.set_legal_hold(
            vault.pseudonym(args.contributor), args.period, by=EMBEDDED_STEWARD, reason=args.reason
        )
    finally:
        vault.close()
    print(f"legal hold set on {', '.join(args.period)}; retention will not expire them")
    return 0


def run_hold_release(args: argparse.Namespace) -> int:
    vault = open_vault(home_of(args))
    try:
        vault.release_legal_hold(
            vault.pseudonym(args.contributor), args.period, by=EMBEDDED_STEWARD, reason=args.reason
        )
    finally:
        vault.close()
    print(f"legal hold released on {', '.join(args.period)}")
    return 0


def run_hold_list(args: argparse.Namespace) -> int:
    vault = open_vault(home_of(args))
    try:
        for h in vault.legal_holds():
            print(f"{h.pseudonym} {h.period} set by {h.set_by} at {h.set_at:%Y-%m-%d}: {h.reason}")
    finally:
        vault.close()
    return 0


# -- parser wiring (main.py owns the parser; these helpers add our subcommands) -------------

Adder = Callable[[Any, str, str, str], argparse.ArgumentParser]


def add_grant_commands(sub: Any, add: Adder) -> None:
    """Register ``keystep grant …`` and ``keystep hold …`` with main.py's ``_add`` helper."""
    grant = add(sub, "grant", "", "steward: grants, break-glass")
    gsub = grant.add_subparsers(dest="grant_command", metavar="ACTION")
    gsub.required = True
    add(gsub, "list", "keystep.cli.trust:run_grant_list", "every grant and break-glass")
    p = add(gsub, "create", "keystep.cli.trust:run_grant_create", "grant access, with an expiry")
    p.add_argument("--principal", required=True)
    p.add_argument("--role", required=True, choices=("builder", "researcher"))
    p.add_argument("--purpose", required=True)
    p.add_argument("--data-class", default=SEALED_BATCHES)
    p.add_argument("--days", type=int, required=True, help="expires after DAYS (required)")
    p.add_argument("--contributor", metavar="ID", help="only this contributor's data")
    p.add_argument("--why", help="justification, recorded in the audit log")
    p = add(
        gsub,
        "builder",
        "keystep.cli.trust:run_grant_builder",
        "renew the embedded builder grant used by keystep export",
    )
    p.add_argument("--days", type=int, default=90)
    p = add(gsub, "revoke", "keystep.cli.trust:run_grant_revoke", "end a grant or break-glass")
    p.add_argument("grant_id")
    p.add_argument("--why")
    p = add(
        gsub,
        "break-glass",
        "keystep.cli.trust:run_break_glass",
        "raw access for one steward: two approvers, a justification, at most 24 h",
    )
    p.add_argument("--steward", required=True, help="who will read")
    p.add_argument("--contributor", required=True, metavar="ID")
    p.add_argument("--approver", action="append", required=True, help="give twice")
    p.add_argument("--justification", required=True)
    p.add_argument("--hours", type=float, default=4.0)

    hold = add(sub, "hold", "", "steward: legal holds that suspend retention")
    hsub = hold.add_subparsers(dest="hold_command", metavar="ACTION")
    hsub.required = True
    add(hsub, "list", "keystep.cli.trust:run_hold_list", "active legal holds")
    for name, verb in (("set", "suspend retention"), ("release", "let retention resume")):
        p = add(hsub, name, f"keystep.cli.trust:run_hold_{name}", f"{verb} for named periods")
        p.add_argument("--contributor", required=True, metavar="ID")
        p.add_argument("--period", action="append", required=True, help="YYYY-MM; repeatable")
        p.add_argument("--reason", required=True)
