"""The blob check reads a ``segments:`` store: each live record must be a v1 envelope, a
damaged segment is reported, and neither deleted records nor a torn tail are findings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from exposurekit import Deployment

from keystep.exposure.base import ScanContext
from keystep.exposure.envelopes import BlobEnvelopeCheck
from keystep.store.segments import SegmentBlobStore


def _findings(ctx: ScanContext) -> list[str]:
    return [f"{f.where}: {f.problem}" for f in BlobEnvelopeCheck().run(ctx)]


def _segments(d: Deployment, tmp_path: Path) -> tuple[ScanContext, Path]:
    """Two segments of sealed batches (a small segment size rolls over after two)."""
    root = tmp_path / "segblobs"
    store = SegmentBlobStore(root, segment_bytes=2 * len(d.envelope) + 200)
    for i in range(4):
        store.put(f"v1/p/batch-{i}", d.envelope)
    store.delete("v1/p/batch-3")
    store.close()
    d.ctx.blobs_dir = root
    return d.ctx, root


def _seg(root: Path, n: int) -> Path:
    return sorted(root.glob("seg-*.kss"))[n]


def _plaintext_record(root: Path) -> None:
    store = SegmentBlobStore(root)
    store.put("v1/p/leak", b'{"kind": "text.typed", "text": "my secret memo"}')
    store.close()


def _damage_first_segment(root: Path) -> None:
    path = _seg(root, 0)
    data = bytearray(path.read_bytes())
    data[8:12] = b"XXXX"  # the first record's magic
    path.write_bytes(bytes(data))


MUTATIONS: dict[str, Callable[[Path], None]] = {
    "a plaintext blob in a segment": _plaintext_record,
    "a damaged earlier segment": _damage_first_segment,
    "a plain file beside the segments": lambda root: (root / "dump.json").write_text("{}"),
}


def test_a_segment_store_of_envelopes_is_clean(deployment: Deployment, tmp_path: Path) -> None:
    ctx, root = _segments(deployment, tmp_path)
    assert len(list(root.glob("seg-*.kss"))) >= 2
    assert _findings(ctx) == []
    # A torn write at the end of the active segment was never acknowledged: not a finding.
    last = sorted(root.glob("seg-*.kss"))[-1]
    with open(last, "ab") as fh:
        fh.write(b"KSR1L\x00")
    assert _findings(ctx) == []


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_segment_mutation_is_found(deployment: Deployment, tmp_path: Path, name: str) -> None:
    ctx, root = _segments(deployment, tmp_path)
    MUTATIONS[name](root)
    found = list(BlobEnvelopeCheck().run(ctx))
    assert found, name
    assert all(f.fix for f in found)


def test_the_scan_repairs_nothing(deployment: Deployment, tmp_path: Path) -> None:
    ctx, root = _segments(deployment, tmp_path)
    last = sorted(root.glob("seg-*.kss"))[-1]
    with open(last, "ab") as fh:
        fh.write(b"torn")
    before = {p: (p.stat().st_size, p.read_bytes()) for p in root.iterdir()}
    _findings(ctx)
    assert {p: (p.stat().st_size, p.read_bytes()) for p in root.iterdir()} == before
