"""Export throughput and memory: streaming pipeline vs a naive loader that reads everything first.

Run: ``.venv/bin/python bench/export.py [--base-batches 10] [--actions 30] [--image jpeg]``.

A scripted 1280x800 session (WebP lossless keyframe per batch + a patch frame before each
action, as the recorder writes them) is sealed through a real local vault, stored as
ciphertext files, and exported at 1x, 4x and 16x its length. Each measurement runs in a
fresh process: steps/s per core = steps / CPU seconds (user+sys, all threads) spent in
unseal + decode + validate + reduce + screenshot rebuild/encode + Parquet write; peak
memory = the process's peak RSS (ru_maxrss). Prints one table.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "dataset"))

from keystep.dataset.export import Exporter, ExportOptions, LocalEngine  # noqa: E402
from keystep.dataset.frames import ImageEncoding  # noqa: E402
from keystep.dataset.prepare import PreparedBatch, RejectedBatch, prepare_batch  # noqa: E402
from keystep.dataset.source import BatchRef, BatchSource  # noqa: E402
from keystep.dataset.state import DatasetRegistry  # noqa: E402
from keystep.model.manifest import Manifest, default_manifest  # noqa: E402
from keystep.seal.envelope import BatchHeader, parse_envelope  # noqa: E402
from keystep.vault.base import Unsealed  # noqa: E402
from keystep.vault.local import LocalVault  # noqa: E402

SCALES = (1, 4, 16)
MASTER = base64.b64encode(b"b" * 32).decode()


class FolderSource(BatchSource):
    """Sealed envelopes as files (ciphertext); read one at a time."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.files = sorted(folder.glob("*.ks"))[:limit]

    def refs(self) -> list[BatchRef]:
        out = []
        for f in self.files:
            with f.open("rb") as fh:
                head = fh.read(20000)  # the header is at most 16 KiB
            h = _header(head, f)
            out.append(BatchRef(h.batch_id, h.device, h.seq, h.contributor, h.manifest_version))
        return out

    def read(self, batch_id: str) -> bytes:
        return (self.files[0].parent / f"{batch_id}.ks").read_bytes()


def _header(head: bytes, f: Path) -> BatchHeader:
    """Parse from the first bytes; the signature check needs the whole file, the header not."""
    try:
        return parse_envelope(head).header
    except ValueError:
        return parse_envelope(f.read_bytes()).header


class NaiveEngine:
    """Reads and opens the whole recording first, then processes it (what a simple loader
    does): memory grows with the recording."""

    def prepare(
        self,
        items: Iterator[tuple[BatchRef, Unsealed]],
        manifests: Mapping[int, Manifest],
        encoding: ImageEncoding,
    ) -> Iterator[tuple[BatchRef, PreparedBatch | RejectedBatch]]:
        everything = list(items)
        prepared = [
            (ref, prepare_batch(u.header, u.content, manifests, encoding)) for ref, u in everything
        ]
        yield from prepared


def generate(folder: Path, vault_dir: Path, batches: int, actions: int) -> None:
    from synth import BUILDER, Device, Session, grant_builder, scripted_batches

    vault = LocalVault.open(vault_dir, create=True, env={"KEYSTEP_MASTER_KEY": MASTER})
    grant_builder(vault)
    device = Device(vault, "bench", "dev-bench")
    session = Session(1280, 800, seed=5, keep_screens=False, codec="zstd-ppm")
    folder.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(
        scripted_batches(device, session, batches=batches, actions_per_batch=actions)
    ):
        (folder / f"{parse_envelope(blob).header.batch_id}.ks").write_bytes(blob)
        del i
    del BUILDER
    vault.close()


def measure(args: argparse.Namespace) -> None:
    from synth import BUILDER

    vault = LocalVault.open(Path(args.vault), env={"KEYSTEP_MASTER_KEY": MASTER})
    source = FolderSource(Path(args.blobs), args.limit)
    out = Path(args.out)
    engine = NaiveEngine() if args.mode == "naive" else LocalEngine()
    exporter = Exporter(
        source=source,
        vault=vault,
        principal=BUILDER,
        manifests={1: default_manifest()},
        registry=DatasetRegistry(out / "home"),
        options=ExportOptions(out=out / "ds", image=ImageEncoding(args.image)),
        engine=engine,
    )
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    report = exporter.export()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(
        json.dumps(
            {
                "steps": report.steps,
                "cpu": cpu,
                "wall": wall,
                "peak_mb": r1.ru_maxrss / 1024,
                "failed": len(report.failed),
            }
        )
    )
    vault.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-batches", type=int, default=10)
    ap.add_argument("--actions", type=int, default=30, help="actions per batch")
    ap.add_argument("--image", default="jpeg", choices=("jpeg", "webp", "png"))
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="stream", help=argparse.SUPPRESS)
    ap.add_argument("--vault", help=argparse.SUPPRESS)
    ap.add_argument("--blobs", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="ksbench-") as tmp:
        root = Path(tmp)
        total = args.base_batches * max(SCALES)
        t = time.perf_counter()
        generate(root / "blobs", root / "vault", total, args.actions)
        print(
            f"generated {total} sealed batches in {time.perf_counter() - t:.0f} s", file=sys.stderr
        )
        results: dict[tuple[int, str], dict[str, float]] = {}
        for scale in SCALES:
            for mode in ("stream", "naive"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--measure",
                    "--mode",
                    mode,
                    "--vault",
                    str(root / "vault"),
                    "--blobs",
                    str(root / "blobs"),
                    "--limit",
                    str(args.base_batches * scale),
                    "--out",
                    str(root / f"out-{scale}-{mode}"),
                    "--image",
                    args.image,
                ]
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                results[(scale, mode)] = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"  {scale}x {mode}: done", file=sys.stderr)
    print(f"export benchmark: 1280x800, {args.actions} actions/batch, screenshots {args.image}")
    print(
        "| length | steps | streaming steps/s/core | streaming peak RSS | "
        "naive steps/s/core | naive peak RSS |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for scale in SCALES:
        s, n = results[(scale, "stream")], results[(scale, "naive")]
        print(
            f"| {scale}x | {int(s['steps'])} | {s['steps'] / s['cpu']:.0f} | "
            f"{s['peak_mb']:.0f} MB | {n['steps'] / n['cpu']:.0f} | {n['peak_mb']:.0f} MB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
