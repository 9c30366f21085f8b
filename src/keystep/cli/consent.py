"""`keystep consent show | accept | withdraw | receipt`."""

from __future__ import annotations

import argparse
import json

from keystep.capture.consent import (
    ConsentError,
    consented_manifest_file,
    give_consent,
    latest_receipt,
    read_consent,
    verify_receipt,
    withdraw_consent,
)
from keystep.cli.common import confirm, home_of, interactive, manifest_in_force, read_manifest_file
from keystep.cli.main import UsageError
from keystep.home import write_private
from keystep.model.manifest import Manifest, diff_manifests, load_manifest, render_plain


def _audit(home_args: argparse.Namespace, kind: str, *, version: int, pseudonym: str) -> None:
    from keystep.cli.setup import record_audit

    record_audit(home_args, kind, manifest_version=version, pseudonym=pseudonym)


def _changes(old: Manifest, new: Manifest) -> list[str]:
    return diff_manifests(old, new) if old.digest != new.digest else []


def run_show(args: argparse.Namespace) -> int:
    home = home_of(args)
    current = manifest_in_force(home)
    shown = read_manifest_file(args.manifest) if args.manifest else current
    if args.yaml:
        print(shown.to_yaml(), end="")
        return 0
    print(render_plain(shown))
    consent = read_consent(home)
    baseline: Manifest | None = None
    if args.manifest:
        baseline = current
    elif consent.manifest_version is not None and not consent.covers(shown):
        path = consented_manifest_file(home, consent.manifest_version)
        if path.exists():
            baseline = load_manifest(path.read_text("utf-8"))
    if baseline is not None:
        lines = _changes(baseline, shown)
        if lines:
            print(f"\nWhat changed since version {baseline.version}:")
            print("\n".join(f"  {line}" for line in lines))
    print()
    if consent.covers(shown):
        print(f"You consented to this version (v{shown.version}).")
    elif consent.state == "withdrawn":
        print("You have withdrawn consent: nothing is recorded.")
    else:
        print("You have not consented to this version: nothing is recorded until you run")
        print("  keystep consent accept --yes")
    return 0


def run_accept(args: argparse.Namespace) -> int:
    home = home_of(args)
    current = manifest_in_force(home)
    manifest = current
    if args.manifest:
        manifest = read_manifest_file(args.manifest)
        if manifest.version < current.version:
            raise UsageError(
                f"manifest v{manifest.version} is older than the one in force (v{current.version})"
            )
        if manifest.version == current.version and manifest.digest != current.digest:
            raise UsageError(
                f"manifest v{manifest.version} differs from the one in force but keeps its version"
            )
    if not args.yes:
        if not interactive():
            raise UsageError("consent needs --yes when standard input is not a terminal")
        print(render_plain(manifest))
        lines = _changes(current, manifest)
        if lines:
            print("\nWhat changed:\n" + "\n".join(f"  {line}" for line in lines))
        if not confirm(f"\nConsent to manifest v{manifest.version}?"):
            print("Not consented; nothing is recorded.")
            return 1
    if manifest is not current:
        write_private(home.manifest_file, manifest.to_yaml().encode("utf-8"))
    cfg = home.read_config()
    receipt = give_consent(home, manifest, device=cfg["device_id"], pseudonym=cfg["pseudonym"])
    _audit(args, "consent-given", version=manifest.version, pseudonym=cfg["pseudonym"])
    print(f"Consent recorded for manifest v{manifest.version} ({manifest.digest[:12]}).")
    print(f"Your receipt (keep it): {receipt}")
    return 0


def run_withdraw(args: argparse.Namespace) -> int:
    home = home_of(args)
    withdraw_consent(home)
    cfg = home.read_config()
    try:
        version = manifest_in_force(home).version
    except ValueError:
        version = 0
    _audit(args, "consent-withdrawn", version=version, pseudonym=cfg["pseudonym"])
    print("Consent withdrawn: recording has stopped. Nothing more is recorded until you")
    print("consent again.")
    print("To delete what was already recorded: keystep erase")
    return 0


def run_receipt(args: argparse.Namespace) -> int:
    home = home_of(args)
    path = latest_receipt(home)
    if path is None:
        raise ConsentError("no consent receipt in this home")
    receipt = json.loads(path.read_text("utf-8"))
    verify_receipt(receipt)
    print(json.dumps(receipt, indent=2))
    print(f"receipt {path}: signature verifies", flush=True)
    return 0
