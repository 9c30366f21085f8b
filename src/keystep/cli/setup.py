"""`keystep init`: create an embedded deployment (home, device key, vault, manifest)."""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystep.cli.common import home_of, interactive, read_manifest_file
from keystep.cli.main import UsageError
from keystep.home import (
    CONFIG_VERSION,
    Home,
    default_vault_dir,
    ensure_private_dir,
    resolve_home,
    write_json,
    write_private,
)
from keystep.model.manifest import Manifest, default_manifest
from keystep.model.periods import next_period, period_of
from keystep.seal.device import device_key_pem, raw_public_key


def _passphrase(args: argparse.Namespace) -> str | None:
    if not getattr(args, "passphrase", False):
        return os.environ.get("KEYSTEP_PASSPHRASE") or None
    env = os.environ.get("KEYSTEP_PASSPHRASE")
    if env:
        return env
    if not interactive():
        raise UsageError(
            "--passphrase needs KEYSTEP_PASSPHRASE when standard input is not a terminal"
        )
    first = getpass.getpass("Vault passphrase: ")
    if len(first) < 12:
        raise UsageError("the passphrase must have at least 12 characters")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the passphrases differ")
    return first


def _sealing_entry(key: Any) -> dict[str, str]:
    return {
        "key_id": key.key_id,
        "public_key": base64.b64encode(key.public_key).decode("ascii"),
        "pseudonym": key.pseudonym,
        "period": key.period,
    }


def sealing_keys_file(home: Home) -> Path:
    return home.device_dir / "sealing_keys.json"


def init_home(
    home: Home,
    *,
    manifest: Manifest | None = None,
    contributor: str | None = None,
    vault_dir: Path | None = None,
    passphrase: str | None = None,
) -> dict[str, Any]:
    """Create the home and the vault outside it; returns the config. Used by tests too."""
    from keystep.vault import open_local_vault

    manifest = manifest or default_manifest()
    contributor = contributor or getpass.getuser()
    vault_dir = (vault_dir or default_vault_dir(home)).absolute()
    if vault_dir == home.root or home.root in vault_dir.parents:
        raise UsageError(f"the vault must live outside the data home ({vault_dir} is inside it)")
    for d in (
        home.root,
        home.consent_dir,
        home.device_dir,
        home.outbox_dir,
        home.state_dir,
        home.collector_dir,
        home.blobs_dir,
        home.datasets_dir,
    ):
        ensure_private_dir(d)
    vault = open_local_vault(
        vault_dir, create=True, passphrase=passphrase, keep_months=manifest.keep_months
    )
    try:
        pseudonym = vault.enroll_contributor(contributor)
        device_key = Ed25519PrivateKey.generate()
        device_id = "d_" + uuid.uuid4().hex[:16]
        write_private(
            home.device_key_file,
            device_key_pem(device_key),
        )
        public = raw_public_key(device_key)
        vault.register_device(device_id, public, pseudonym=pseudonym)
        period = period_of(time.time())
        keys = {
            p: _sealing_entry(vault.sealing_key(pseudonym, p))
            for p in (period, next_period(period))
        }
        write_json(sealing_keys_file(home), keys)
        grant_builder = getattr(vault, "ensure_embedded_grants", None)
        if grant_builder is not None:
            grant_builder(pseudonym=pseudonym)
        master = vault.describe_master() if hasattr(vault, "describe_master") else "unknown"
    finally:
        close = getattr(vault, "close", None)
        if close is not None:
            close()
    write_private(home.manifest_file, manifest.to_yaml().encode("utf-8"))
    config: dict[str, Any] = {
        "config_version": CONFIG_VERSION,
        "device_id": device_id,
        "contributor_id": contributor,
        "pseudonym": pseudonym,
        "vault": {"kind": "local", "path": str(vault_dir)},
        "collector": {"kind": "embedded"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(home.config_file, config)
    config["master"] = master
    return config


def run_init(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    if home.exists():
        cfg = home.read_config()
        print(
            f"{home.root} is already a keystep home (device {cfg['device_id']}); nothing changed."
        )
        return 0
    manifest = read_manifest_file(args.manifest) if args.manifest else default_manifest()
    vault_dir = Path(args.vault).expanduser() if args.vault else None
    cfg = init_home(
        home,
        manifest=manifest,
        contributor=args.contributor,
        vault_dir=vault_dir,
        passphrase=_passphrase(args),
    )
    print(f"keystep home:   {home.root}")
    print(f"vault:          {cfg['vault']['path']} (outside the home)")
    print(f"master secret:  {cfg['master']}")
    print(f"device:         {cfg['device_id']}   contributor pseudonym: {cfg['pseudonym']}")
    print(f"manifest:       v{manifest.version} — nothing is recorded until you consent.")
    print(
        "Next: keystep consent show   then   keystep consent accept --yes   then   keystep record"
    )
    return 0


def open_vault_for(home: Home) -> Any:
    """The vault this home is configured with (embedded: the local vault)."""
    from keystep.vault import open_local_vault

    cfg = home.read_config()
    return open_local_vault(Path(cfg["vault"]["path"]))


def record_audit(args: argparse.Namespace, kind: str, **fields: Any) -> None:
    """Append an audit event through the vault (fail closed: an error propagates)."""
    from keystep.audit.events import event_for

    home = home_of(args)
    vault = open_vault_for(home)
    try:
        vault.record(event_for(kind, principal=home.read_config()["contributor_id"], **fields))
    finally:
        close = getattr(vault, "close", None)
        if close is not None:
            close()
