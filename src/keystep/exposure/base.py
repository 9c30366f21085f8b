"""The exposure scanner's frame: what a check sees, what it reports, and the scan itself."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPORT_VERSION: Final = 1


@dataclass(frozen=True)
class Finding:
    """One exposure: where, what is wrong, and the command or change that fixes it."""

    check: str
    where: str
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.check}: {self.where}: {self.problem} — fix: {self.fix}"


@dataclass
class ScanContext:
    """Everything a check may look at. Built from a home; any part may be absent.

    ``keystore`` is read without the master key: grants and modes are not secrets, so an
    operator or auditor can scan without being able to unlock anything.
    """

    home: Path | None = None
    vault_dir: Path | None = None
    outbox_db: Path | None = None
    blobs_dir: Path | None = None
    collector_db: Path | None = None
    datasets_dir: Path | None = None
    spill_dirs: list[Path] = field(default_factory=list)
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    db_url: str | None = None
    audit_public_key: bytes | None = None

    @property
    def keystore(self) -> Path | None:
        return self.vault_dir / "keystore.db" if self.vault_dir else None

    def temp_entries(self) -> list[Path]:
        """keystep's own entries in the shared temp folder (we never scan other programs')."""
        try:
            return sorted(p for p in self.temp_dir.iterdir() if p.name.startswith("keystep"))
        except OSError:
            return []


class Check(ABC):
    """One kind of exposure. Subclasses are small and independent; add new ones freely."""

    name: str = "check"

    @abstractmethod
    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        """Yield every finding (nothing: this store is not exposed)."""

    def finding(self, where: Path | str, problem: str, fix: str) -> Finding:
        return Finding(self.name, str(where), problem, fix)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def walk(root: Path, *, skip: Sequence[Path] = ()) -> Iterator[Path]:
    """Every entry under ``root`` (root included), not following symlinks."""
    if not root.exists():
        return
    yield root
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n not in skip]
        for n in dirnames + filenames:
            yield d / n


@dataclass
class ScanReport:
    findings: list[Finding]
    checks: list[str]

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": REPORT_VERSION,
                "clean": self.clean,
                "checks": self.checks,
                "findings": [asdict(f) for f in self.findings],
            },
            indent=2,
        )

    def lines(self) -> list[str]:
        return [f.line() for f in self.findings]


def scan(ctx: ScanContext, checks: Sequence[Check]) -> ScanReport:
    findings: list[Finding] = []
    for check in checks:
        try:
            findings.extend(check.run(ctx))
        except Exception as exc:  # a check that cannot look is itself a finding
            findings.append(
                Finding(
                    check.name,
                    "-",
                    f"the check could not run: {exc}",
                    "make the store readable to the scanner and re-run",
                )
            )
    return ScanReport(findings, [c.name for c in checks])


def context_for_home(home: Path, config: dict[str, Any] | None = None) -> ScanContext:
    """The stores of an embedded deployment, as ``keystep.home.Home`` lays them out."""
    config = config if config is not None else _read_config(home)
    vault = config.get("vault", {}) if config else {}
    vault_dir = (
        Path(vault["path"]) if vault.get("kind", "local") == "local" and vault.get("path") else None
    )
    return ScanContext(
        home=home,
        vault_dir=vault_dir,
        outbox_db=home / "outbox" / "outbox.sqlite",
        blobs_dir=home / "collector" / "blobs",
        collector_db=home / "collector" / "collector.sqlite",
        datasets_dir=home / "datasets",
        spill_dirs=[home / "spill", home / "tmp", home / "state"],
    )


def _read_config(home: Path) -> dict[str, Any]:
    try:
        cfg: dict[str, Any] = json.loads((home / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return cfg
