"""A dataset's build state in the home: which batches it holds, its key, its running totals."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from keystep.home import write_json

STATE_VERSION: Final = 1
# Written into the dataset folder: names the dataset, carries no secret.
MARKER: Final = "keystep-dataset.json"

EXPORTED: Final = "exported"
REJECTED: Final = "rejected"
FAILED: Final = "failed"


class DatasetStateError(RuntimeError):
    """A dataset folder or state that does not fit (unknown id, wrong format, corrupt)."""


@dataclass
class BatchEntry:
    contributor: str  # the vault pseudonym from the batch header: private to the builder
    status: str
    steps: int = 0
    manifest_version: int = 0
    redaction_version: str = ""
    reason: str = ""


@dataclass
class DatasetState:
    """Kept in ``<home>/datasets/<dataset_id>/state.json`` (0600), never in the dataset folder:
    the key would let anyone holding the dataset re-link its pseudonyms to the vault's."""

    dataset_id: str
    key: bytes
    out: str
    format: str
    purpose: str
    image_format: str
    dataset_version: int = 1
    supersedes: str | None = None
    runs: int = 0
    batches: dict[str, BatchEntry] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    apps: dict[str, int] = field(default_factory=dict)
    issues: dict[str, int] = field(default_factory=dict)
    episodes: int = 0
    steps: int = 0
    t_min: float | None = None
    t_max: float | None = None

    @classmethod
    def new(cls, *, out: Path, format: str, purpose: str, image_format: str) -> DatasetState:
        return cls(
            dataset_id="ds-" + secrets.token_hex(6),
            key=secrets.token_bytes(32),
            out=str(out),
            format=format,
            purpose=purpose,
            image_format=image_format,
        )

    # Keyed per dataset: the same contributor has unrelated pseudonyms in two datasets.
    def contributor_pseudonym(self, vault_pseudonym: str) -> str:
        mac = hmac.new(self.key, b"contributor|" + vault_pseudonym.encode(), hashlib.sha256)
        return "c-" + mac.hexdigest()[:16]

    def episode_id(self, first_eid: str) -> str:
        mac = hmac.new(self.key, b"episode|" + first_eid.encode(), hashlib.sha256)
        return "ep-" + mac.hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "state_version": STATE_VERSION,
            "dataset_id": self.dataset_id,
            "key": self.key.hex(),
            "out": self.out,
            "format": self.format,
            "purpose": self.purpose,
            "image_format": self.image_format,
            "dataset_version": self.dataset_version,
            "supersedes": self.supersedes,
            "runs": self.runs,
            "batches": {k: vars(v) for k, v in self.batches.items()},
            "counts": self.counts,
            "apps": self.apps,
            "issues": self.issues,
            "episodes": self.episodes,
            "steps": self.steps,
            "t_min": self.t_min,
            "t_max": self.t_max,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetState:
        if d.get("state_version") != STATE_VERSION:
            raise DatasetStateError("dataset state has an unknown version")
        return cls(
            dataset_id=d["dataset_id"],
            key=bytes.fromhex(d["key"]),
            out=d["out"],
            format=d["format"],
            purpose=d["purpose"],
            image_format=d["image_format"],
            dataset_version=d["dataset_version"],
            supersedes=d["supersedes"],
            runs=d["runs"],
            batches={k: BatchEntry(**v) for k, v in d["batches"].items()},
            counts=d["counts"],
            apps=d["apps"],
            issues=d["issues"],
            episodes=d["episodes"],
            steps=d["steps"],
            t_min=d["t_min"],
            t_max=d["t_max"],
        )


class DatasetRegistry:
    """The datasets this home has built: ``<home>/datasets/<id>/state.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, dataset_id: str) -> Path:
        if not dataset_id.replace("-", "").replace(".", "").isalnum():
            raise DatasetStateError(f"not a dataset id: {dataset_id!r:.40}")
        return self.root / dataset_id / "state.json"

    def load(self, dataset_id: str) -> DatasetState:
        try:
            raw = json.loads(self.path(dataset_id).read_text("utf-8"))
        except FileNotFoundError:
            raise DatasetStateError(f"no dataset {dataset_id} in {self.root}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetStateError(f"dataset {dataset_id} state is unreadable: {exc}") from exc
        return DatasetState.from_json(raw)

    def save(self, state: DatasetState) -> None:
        write_json(self.path(state.dataset_id), state.to_json())

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/state.json"))

    def for_folder(self, out: Path) -> DatasetState | None:
        """The dataset already in ``out`` (None for an empty or new folder)."""
        marker = out / MARKER
        if not marker.exists():
            return None
        try:
            dataset_id = json.loads(marker.read_text("utf-8"))["dataset_id"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetStateError(f"{marker} is unreadable") from exc
        return self.load(dataset_id)

    def mark_folder(self, state: DatasetState, folder: Path) -> None:
        marker = {
            "dataset_id": state.dataset_id,
            "dataset_version": state.dataset_version,
            "format": state.format,
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n", "utf-8")
