"""The data home (KEYSTEP_HOME): where each piece of an embedded deployment lives."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

CONFIG_VERSION: Final = 1
DEFAULT_HOME: Final = "~/.keystep"


class HomeError(RuntimeError):
    """A home that is missing, unreadable or not initialised."""


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest_file(self) -> Path:
        """The manifest in force on this device."""
        return self.root / "manifest.yaml"

    @property
    def consent_dir(self) -> Path:
        return self.root / "consent"

    @property
    def consent_file(self) -> Path:
        """The current consent state (which manifest version and digest, or withdrawn)."""
        return self.consent_dir / "consent.json"

    @property
    def device_dir(self) -> Path:
        return self.root / "device"

    @property
    def device_key_file(self) -> Path:
        return self.device_dir / "device.key"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def outbox_db(self) -> Path:
        return self.outbox_dir / "outbox.sqlite"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def pause_file(self) -> Path:
        return self.state_dir / "pause.json"

    @property
    def exclusions_file(self) -> Path:
        """The contributor's own additions to the manifest's excluded apps."""
        return self.state_dir / "exclusions.json"

    @property
    def recorder_lock(self) -> Path:
        return self.state_dir / "recorder.lock"

    @property
    def recorder_status(self) -> Path:
        return self.state_dir / "recorder.json"

    @property
    def collector_dir(self) -> Path:
        """The embedded collector: metadata database and blob folder."""
        return self.root / "collector"

    @property
    def blobs_dir(self) -> Path:
        return self.collector_dir / "blobs"

    @property
    def collector_db(self) -> Path:
        return self.collector_dir / "collector.sqlite"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    def exists(self) -> bool:
        return self.config_file.is_file()

    def read_config(self) -> dict[str, Any]:
        try:
            text = self.config_file.read_text("utf-8")
        except FileNotFoundError:
            raise HomeError(
                f"{self.root} is not a keystep home (run: keystep init --home {self.root})"
            ) from None
        except OSError as exc:
            raise HomeError(f"cannot read {self.config_file}: {exc.strerror}") from exc
        try:
            cfg: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HomeError(f"{self.config_file} is corrupt: {exc.msg}") from exc
        if cfg.get("config_version") != CONFIG_VERSION:
            raise HomeError(f"{self.config_file} has unknown config_version")
        return cfg

    @property
    def vault_dir(self) -> Path:
        return Path(self.read_config()["vault"]["path"])


def resolve_home(arg: str | None = None) -> Home:
    """``--home`` beats ``KEYSTEP_HOME`` beats ``~/.keystep``."""
    raw = arg or os.environ.get("KEYSTEP_HOME") or DEFAULT_HOME
    return Home(Path(raw).expanduser().absolute())


def default_vault_dir(home: Home) -> Path:
    """Outside the data home, so a copy of the home never carries a key."""
    env = os.environ.get("KEYSTEP_VAULT")
    if env:
        return Path(env).expanduser().absolute()
    return home.root.parent / f"{home.root.name}-vault"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents as needed) with mode 0700 on the leaf."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write atomically, fsync'd, mode 0600 from the first byte."""
    ensure_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json(path: Path, obj: Any) -> None:
    write_private(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))
