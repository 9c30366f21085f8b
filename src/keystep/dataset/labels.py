"""Task labels for episodes (``keystep label``), kept in the home and copied into datasets."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from keystep.home import write_json

LABELS_VERSION: Final = 1
LABELS_FILE: Final = "labels.json"
EPISODE_ID: Final = re.compile(r"^ep-[0-9a-f]{16}$")
MAX_TASK: Final = 2000


class LabelError(ValueError):
    """A label that does not fit (bad episode id, empty or overlong task)."""


class LabelStore:
    """``<home>/datasets/labels.json``: ``{episode_id: {"task": ..., "at": unix time}}``."""

    def __init__(self, datasets_dir: Path) -> None:
        self.path = datasets_dir / LABELS_FILE

    def all(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        if doc.get("labels_version") != LABELS_VERSION:
            raise LabelError(f"{self.path} has an unknown version")
        labels: dict[str, dict[str, Any]] = doc["labels"]
        return labels

    def set(self, episode_id: str, task: str) -> None:
        if not EPISODE_ID.match(episode_id):
            raise LabelError(f"not an episode id: {episode_id!r:.40} (expected ep-<16 hex>)")
        task = task.strip()
        if not task or len(task) > MAX_TASK:
            raise LabelError(f"a task is 1 to {MAX_TASK} characters")
        labels = self.all()
        labels[episode_id] = {"task": task, "at": round(time.time(), 3)}
        write_json(self.path, {"labels_version": LABELS_VERSION, "labels": labels})


def episode_ids(dataset: Path) -> set[str]:
    """Episode ids in an exported dataset folder (reads only that column)."""
    ids: set[str] = set()
    for f in sorted((dataset / "data").glob("*.parquet")):
        ids.update(pq.read_table(f, columns=["episode_id"]).column(0).to_pylist())
    for f in sorted(dataset.glob("data-*.arrow")):
        with pa.OSFile(str(f), "rb") as src:
            ids.update(pa.ipc.open_stream(src).read_all().column("episode_id").to_pylist())
    for f in sorted(dataset.glob("shard-*.tar")):
        import tarfile

        with tarfile.open(f) as tar:
            ids.update(m.name.split("_", 1)[0] for m in tar.getmembers())
    return ids


def write_dataset_labels(dataset: Path, labels: dict[str, dict[str, Any]]) -> int:
    """Copy the labels of this dataset's episodes into ``<dataset>/labels.json``."""
    mine = {e: {"task": v["task"]} for e, v in labels.items() if e in episode_ids(dataset)}
    if not mine and not (dataset / LABELS_FILE).exists():
        return 0
    (dataset / LABELS_FILE).write_text(json.dumps(mine, indent=2, sort_keys=True) + "\n")
    return len(mine)
