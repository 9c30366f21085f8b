"""`keystep export | replay | label`: build trajectory datasets and check them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from keystep.cli.common import home_of, manifest_in_force
from keystep.cli.main import UsageError
from keystep.dataset.export import Exporter, ExportOptions, ExportReport, PrepareEngine
from keystep.dataset.frames import IMAGE_FORMATS, ImageEncoding
from keystep.dataset.labels import LabelStore, write_dataset_labels
from keystep.dataset.source import RepositorySource
from keystep.dataset.state import DatasetRegistry, DatasetState
from keystep.home import Home
from keystep.model.manifest import Manifest, ManifestError
from keystep.policy.model import Principal
from keystep.store.base import Scope


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Options beyond DESIGN.md's contract (the lead's parser may call this)."""
    p.add_argument(
        "--image-format",
        choices=IMAGE_FORMATS,
        default="jpeg",
        help="how rebuilt screenshots are stored (default jpeg q95 4:4:4; webp/png lossless)",
    )


def _err(msg: str) -> None:
    print(f"keystep: {msg}", file=sys.stderr)


def _summary(r: ExportReport) -> str:
    return (
        f"dataset {r.dataset_id} v{r.dataset_version} at {r.out}: {r.steps} step(s) in "
        f"{r.episodes} episode(s) from {r.batches_exported} new batch(es); "
        f"{len(r.rejected)} rejected, {len(r.failed)} failed"
    )


def _manifests(
    home: Home, versions: set[int], lookup: Callable[[int], Manifest | None]
) -> dict[int, Manifest]:
    """The manifest of every version the batches name (a version nobody published is left
    out, so its batches are rejected)."""
    out: dict[int, Manifest] = {}
    for v in versions:
        m = lookup(v)
        if m is not None:
            out[v] = m
    try:
        current = manifest_in_force(home)
    except ManifestError:
        return out
    out.setdefault(current.version, current)
    return out


def run_export(args: argparse.Namespace) -> int:
    from keystep.cli.trust import open_vault
    from keystep.collector.embedded import EmbeddedCollector, drain_outbox
    from keystep.vault.local import EMBEDDED_BUILDER

    home = home_of(args)
    cfg = home.read_config()
    registry = DatasetRegistry(home.datasets_dir)
    old: DatasetState | None = None
    if args.rebuild:
        if args.mine:
            raise UsageError("--rebuild and --mine do not go together")
        old = registry.load(args.rebuild)
        out = Path(args.out) if args.out else Path(old.out)
    elif not args.out:
        raise UsageError("export needs --out DIR")
    else:
        out = Path(args.out)
    if args.idle_minutes <= 0:
        raise UsageError("--idle-minutes must be positive")
    purpose = "contributor-access" if args.mine else "model-training"
    pseudonym = str(cfg["pseudonym"])
    principal = (
        Principal(str(cfg["contributor_id"]), "contributor") if args.mine else EMBEDDED_BUILDER
    )
    scope = Scope.of_contributor(pseudonym) if args.mine else Scope.builder()
    drained = drain_outbox(home)
    for batch_id, _status, why in drained.rejected:
        _err(f"batch {batch_id} stays in the outbox: {why}")
    options = ExportOptions(
        out=out,
        format=old.format if old else args.format,
        purpose=purpose,
        idle_minutes=args.idle_minutes,
        split_on_app=args.split_on_app,
        image=ImageEncoding(getattr(args, "image_format", None) or "jpeg"),
        only_contributor=pseudonym if args.mine else None,
        progress=sys.stderr.isatty(),
    )
    with EmbeddedCollector(home) as collector:
        source = RepositorySource(collector.repo, collector.blobs, scope)
        manifests = _manifests(
            home, {r.manifest_version for r in source.refs()}, collector.manifest
        )

        def lineage(dataset_id: str, entries: Sequence[tuple[str, str]]) -> None:
            collector.repo.record_lineage(dataset_id, entries, scope=Scope.builder())

        vault = open_vault(home)
        try:
            with _engine(args.engine) as engine:
                exporter = Exporter(
                    source=source,
                    vault=vault,
                    principal=principal,
                    manifests=manifests,
                    registry=registry,
                    options=options,
                    engine=engine,
                    record_lineage=None if args.mine else lineage,
                    on_problem=lambda kind, bid, why: _err(f"batch {bid} {kind}: {why}"),
                )
                report = exporter.rebuild(old) if old is not None else exporter.export()
        finally:
            close = getattr(vault, "close", None)
            if close is not None:
                close()
    write_dataset_labels(report.out, LabelStore(home.datasets_dir).all())
    for code, n in sorted(report.issues.items()):
        _err(f"{n} × {code} (reported, nothing made up)")
    print(_summary(report))
    return 0


def _engine(name: str) -> AbstractContextManager[PrepareEngine | None]:
    if name == "ray":
        from keystep.dataset.ray_engine import RayEngine

        return RayEngine()
    return nullcontext(None)


def _find_dataset(home: Home, episode: str, given: str | None) -> Path:
    from keystep.dataset.labels import episode_ids

    if given:
        return Path(given)
    registry = DatasetRegistry(home.datasets_dir)
    for dataset_id in registry.ids():
        folder = Path(registry.load(dataset_id).out)
        if folder.is_dir() and episode in episode_ids(folder):
            return folder
    raise UsageError(f"no dataset in {home.datasets_dir} holds episode {episode} (use --dataset)")


def run_replay(args: argparse.Namespace) -> int:
    from keystep.dataset.replay import load_episode, plan, replay

    home = home_of(args)
    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    folder = _find_dataset(home, args.episode, getattr(args, "dataset", None))
    rows = load_episode(folder, args.episode)
    if not rows:
        raise UsageError(f"episode {args.episode} is not in {folder}")
    n = replay(plan(rows), display=args.display, speed=args.speed)
    print(f"replayed {len(rows)} step(s) of {args.episode} on {args.display} ({n} commands)")
    return 0


def run_label(args: argparse.Namespace) -> int:
    home = home_of(args)
    store = LabelStore(home.datasets_dir)
    if args.list:
        for episode, label in sorted(store.all().items()):
            print(f"{episode}\t{label['task']}")
        return 0
    if not args.episode or args.task is None:
        raise UsageError("label needs --episode ID --task TEXT (or --list)")
    from keystep.dataset.labels import LabelError

    try:
        store.set(args.episode, args.task)
    except LabelError as exc:
        raise UsageError(str(exc)) from exc
    registry = DatasetRegistry(home.datasets_dir)
    for dataset_id in registry.ids():
        folder = Path(registry.load(dataset_id).out)
        if folder.is_dir():
            write_dataset_labels(folder, store.all())
    print(f"labelled {args.episode}")
    return 0
