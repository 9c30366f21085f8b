"""``--engine ray``: identical output to the local engine, and no plaintext on disk via Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from synth import BUILDER, Device, Session, scripted_batches

from keystep.dataset.export import Exporter, ExportOptions
from keystep.dataset.ray_engine import MEMORY_FS, RayEngine, RayEngineError, is_memory_backed
from keystep.dataset.source import MemorySource
from keystep.dataset.state import DatasetRegistry
from keystep.model.manifest import default_manifest
from keystep.vault.local import LocalVault

MARKER = "RAYPLAINTEXTMARKER"


def _tables(out: Path) -> list[pq.ParquetFile]:
    return [pq.read_table(f) for f in sorted((out / "data").glob("*.parquet"))]


@pytest.mark.slow
def test_ray_output_is_identical_and_nothing_spills(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    session = Session(seed=11)
    batches = list(scripted_batches(device, session, batches=5, actions_per_batch=6))
    session.start_batch()
    session.type(MARKER)
    batches.append(device.seal(session.end_batch()))
    source = MemorySource(batches)
    key = b"\x07" * 32

    def build(out: str, engine: RayEngine | None) -> None:
        Exporter(
            source=source,
            vault=vault,
            principal=BUILDER,
            manifests={1: default_manifest()},
            registry=DatasetRegistry(tmp_path / "datasets"),
            options=ExportOptions(out=tmp_path / out, key=key),
            engine=engine,
        ).export()

    build("local", None)
    with RayEngine(num_cpus=2) as engine:
        import ray

        assert ray.cluster_resources()["CPU"] == 2
        node = ray._private.worker.global_worker.node
        assert node._config["automatic_object_spilling_enabled"] is False
        assert engine.temp_dir is not None and is_memory_backed(engine.temp_dir)
        assert os.environ["RAY_TMPDIR"] == str(engine.temp_dir)
        build("ray", engine)
        # Nothing Ray keeps in its temp dir (logs, session files) holds the plaintext.
        for f in engine.temp_dir.rglob("*"):
            if f.is_file() and not f.is_socket():
                try:
                    assert MARKER.encode() not in f.read_bytes(), f
                except (PermissionError, OSError):
                    continue
        temp = engine.temp_dir
    assert not temp.exists()
    local, remote = _tables(tmp_path / "local"), _tables(tmp_path / "ray")
    assert len(local) == len(remote) > 0
    for a, b in zip(local, remote, strict=True):
        assert a.equals(b)
    assert MARKER in local[0].column("text").to_pylist()


def test_ray_refuses_a_disk_backed_temp_dir(tmp_path: Path) -> None:
    assert is_memory_backed(MEMORY_FS)
    assert not is_memory_backed(tmp_path)
    with pytest.raises(RayEngineError, match="not memory-backed"), RayEngine(temp_root=tmp_path):
        pass
