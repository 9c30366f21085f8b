"""``--engine ray``: per-batch preparation on a Ray cluster, with output identical to local.

Only the per-batch stage (second-pass validation, screenshot rebuilding — the CPU-heavy
part) runs in Ray workers; unsealing stays with the driver (the vault and its audit log
are in the driver's process) and reduction stays ordered per device in the driver, so the
rows written are exactly those of the local engine.

Plaintext must never reach disk through Ray. Ray spills objects to disk when its object
store fills and falls back to file-backed allocation under its temp dir; so:
- object spilling is switched off (``automatic_object_spilling_enabled: false``),
- the object store and Ray's temp dir (``RAY_TMPDIR``) are on a memory-backed file
  system (``/dev/shm``), so even a fallback allocation stays in RAM,
- at most ``window`` batches are in flight, so the store never needs to spill.
Ray is an optional extra (``pip install keystep[ray]``); nothing else imports this module.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from keystep.dataset.frames import ImageEncoding
from keystep.dataset.prepare import PreparedBatch, RejectedBatch, prepare_batch
from keystep.dataset.source import BatchRef
from keystep.model.manifest import Manifest
from keystep.vault.base import Unsealed

MEMORY_FS: Final = Path("/dev/shm")
DEFAULT_CPUS: Final = 2
# The object store is in RAM; this caps it (bytes) so Ray never claims most of /dev/shm.
OBJECT_STORE_BYTES: Final = 512 * 1024 * 1024
SYSTEM_CONFIG: Final[dict[str, Any]] = {
    "automatic_object_spilling_enabled": False,
}


class RayEngineError(RuntimeError):
    """Ray is missing or cannot be started safely (no memory-backed temp dir)."""


def is_memory_backed(path: Path) -> bool:
    """Whether ``path`` lives on tmpfs/ramfs (per /proc/mounts: the longest mount prefix)."""
    real = str(path.resolve())
    best, fstype = "", ""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1]
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fstype = mnt, parts[2]
    return fstype in ("tmpfs", "ramfs")


def _prepare_task(
    header: Any, content: Any, manifests: Mapping[int, Manifest], encoding: ImageEncoding
) -> PreparedBatch | RejectedBatch:
    return prepare_batch(header, content, manifests, encoding)


class RayEngine:
    """A context manager: starts a local Ray instance (or joins ``address``) and stops it."""

    def __init__(
        self,
        *,
        num_cpus: int = DEFAULT_CPUS,
        window: int | None = None,
        temp_root: Path = MEMORY_FS,
        address: str | None = None,
    ) -> None:
        self.num_cpus = num_cpus
        self.window = window or 2 * num_cpus
        self.temp_root = temp_root
        self.address = address
        self.temp_dir: Path | None = None
        self._remote: Any = None
        self._ray: Any = None

    def init_options(self) -> dict[str, Any]:
        assert self.temp_dir is not None
        return {
            "num_cpus": self.num_cpus,
            "include_dashboard": False,
            "log_to_driver": False,
            "object_store_memory": OBJECT_STORE_BYTES,
            "_temp_dir": str(self.temp_dir),
            "_plasma_directory": str(MEMORY_FS),
            "_system_config": dict(SYSTEM_CONFIG),
            "configure_logging": False,
            "_node_ip_address": "127.0.0.1",
        }

    def __enter__(self) -> RayEngine:
        try:
            import ray
        except ImportError as exc:
            raise RayEngineError("--engine ray needs Ray: pip install 'keystep[ray]'") from exc
        if not is_memory_backed(self.temp_root):
            raise RayEngineError(f"{self.temp_root} is not memory-backed; refusing to run Ray")
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ksray-", dir=self.temp_root))
        os.environ["RAY_TMPDIR"] = str(self.temp_dir)
        self._ray = ray
        if self.address is None:
            ray.init(**self.init_options())
        else:
            ray.init(address=self.address, log_to_driver=False)
        self._remote = ray.remote(num_cpus=1)(_prepare_task)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ray is not None:
            self._ray.shutdown()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def prepare(
        self,
        items: Iterator[tuple[BatchRef, Unsealed]],
        manifests: Mapping[int, Manifest],
        encoding: ImageEncoding,
    ) -> Iterator[tuple[BatchRef, PreparedBatch | RejectedBatch]]:
        ray = self._ray
        if ray is None:
            raise RayEngineError("use RayEngine as a context manager")
        book = ray.put(dict(manifests))
        inflight: deque[tuple[BatchRef, Any]] = deque()
        for ref, unsealed in items:
            task = self._remote.remote(unsealed.header, unsealed.content, book, encoding)
            inflight.append((ref, task))
            if len(inflight) >= self.window:
                done_ref, done = inflight.popleft()
                yield done_ref, ray.get(done)
        while inflight:
            done_ref, done = inflight.popleft()
            yield done_ref, ray.get(done)
