"""The export pipeline: stored batches → vault.unseal → validate → reduce → align → write."""

from __future__ import annotations

import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from keystep.dataset.card import render_card
from keystep.dataset.frames import ImageEncoding
from keystep.dataset.hf import HFWriter
from keystep.dataset.parquet import ParquetWriter
from keystep.dataset.prepare import PreparedBatch, RejectedBatch, prepare_batch
from keystep.dataset.schema import Row
from keystep.dataset.source import BatchRef, BatchSource
from keystep.dataset.state import (
    EXPORTED,
    FAILED,
    REJECTED,
    BatchEntry,
    DatasetRegistry,
    DatasetState,
)
from keystep.dataset.webdataset import WebDatasetWriter
from keystep.dataset.writer import DatasetWriter
from keystep.model.events import GAP
from keystep.model.manifest import Manifest
from keystep.policy.model import Principal
from keystep.trajectory.actions import Action
from keystep.trajectory.align import Aligner
from keystep.trajectory.episodes import DEFAULT_IDLE_MINUTES, EpisodeSplitter
from keystep.trajectory.reduce import ReduceConfig, Reducer
from keystep.vault.base import Unsealed, Vault, VaultError

FORMATS: Final = ("parquet", "hf", "webdataset")
WRITERS: Final[dict[str, type[DatasetWriter]]] = {
    "parquet": ParquetWriter,
    "hf": HFWriter,
    "webdataset": WebDatasetWriter,
}
# Batches unsealed per vault call: one durable audit write covers them all.
UNSEAL_CHUNK: Final = 8


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    format: str = "parquet"
    purpose: str = "model-training"
    idle_minutes: float = DEFAULT_IDLE_MINUTES
    split_on_app: bool = False
    image: ImageEncoding = field(default_factory=ImageEncoding)
    reduce: ReduceConfig = field(default_factory=ReduceConfig)
    only_contributor: str | None = None  # --mine: the contributor's own vault pseudonym
    # A new dataset's pseudonym key; fixed only to compare two builds (engine equivalence).
    key: bytes | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")


@dataclass
class ExportReport:
    dataset_id: str
    dataset_version: int
    out: Path
    batches_seen: int = 0
    batches_exported: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    steps: int = 0
    episodes: int = 0
    issues: Counter[str] = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)


class PrepareEngine(Protocol):
    """Runs :func:`prepare_batch` over unsealed batches, yielding results in input order."""

    def prepare(
        self,
        items: Iterator[tuple[BatchRef, Unsealed]],
        manifests: Mapping[int, Manifest],
        encoding: ImageEncoding,
    ) -> Iterator[tuple[BatchRef, PreparedBatch | RejectedBatch]]: ...


class LocalEngine:
    """In-process, one batch at a time."""

    def prepare(
        self,
        items: Iterator[tuple[BatchRef, Unsealed]],
        manifests: Mapping[int, Manifest],
        encoding: ImageEncoding,
    ) -> Iterator[tuple[BatchRef, PreparedBatch | RejectedBatch]]:
        for ref, unsealed in items:
            yield ref, prepare_batch(unsealed.header, unsealed.content, manifests, encoding)


class DeviceStream:
    """One device's recording, followed across its batches in sequence order."""

    def __init__(self, state: DatasetState, options: ExportOptions) -> None:
        self.state = state
        self.reducer = Reducer(options.reduce)
        self.aligner = Aligner()
        self.splitter = EpisodeSplitter(
            idle_minutes=options.idle_minutes,
            split_on_app=options.split_on_app,
            make_id=state.episode_id,
        )
        self.last_seq: int | None = None
        self.manifest_version: int | None = None
        self.contributor = ""
        # Screenshots of this batch and the one before: an action may end a batch later.
        self._shots: deque[dict[str, bytes]] = deque(maxlen=2)
        self.episodes: set[str] = set()

    def _rows(self, actions: list[Action]) -> list[Row]:
        rows = []
        for action in actions:
            placed = self.splitter.place(self.aligner.align(action))
            self.episodes.add(placed.episode_id)
            frame = placed.step.frame
            shot = None
            if frame is not None:
                shot = next((s[frame.eid] for s in self._shots if frame.eid in s), None)
            rows.append(Row.of(placed, screenshot=shot, contributor=self.contributor))
        return rows

    def interrupt(self, reason: str) -> list[Row]:
        rows = self._rows(self.reducer.interrupt("", reason))
        self.aligner.interrupt()
        self.splitter.boundary(reason)
        return rows

    def batch(self, ref: BatchRef, prepared: PreparedBatch) -> list[Row]:
        rows: list[Row] = []
        if self.last_seq is not None and ref.seq != self.last_seq + 1:
            rows += self.interrupt("missing_batch")
        if self.manifest_version is not None and ref.manifest_version != self.manifest_version:
            rows += self.interrupt("manifest_change")
        self.last_seq = ref.seq
        self.manifest_version = ref.manifest_version
        self.contributor = self.state.contributor_pseudonym(ref.contributor)
        self._shots.append(prepared.screenshots)
        for event in prepared.events:
            if event.kind == GAP:
                # What the gap completes happened before it, on the screen before it.
                rows += self._rows(self.reducer.feed(event))
                self.aligner.observe(event)
                self.splitter.boundary("gap")
                continue
            self.aligner.observe(event)
            rows += self._rows(self.reducer.feed(event))
        return rows

    def finish(self) -> list[Row]:
        return self._rows(self.reducer.flush())

    def issues(self) -> Counter[str]:
        c: Counter[str] = Counter(i.code for i in self.reducer.issues)
        c.update(i.code for i in self.aligner.issues)
        return c


def _chunks(refs: Iterator[BatchRef], n: int) -> Iterator[list[BatchRef]]:
    chunk: list[BatchRef] = []
    for ref in refs:
        chunk.append(ref)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Exporter:
    """Builds or extends one dataset. Plaintext exists only in memory between ``unseal`` and
    the dataset files; every batch opened is audited by the vault before it answers."""

    def __init__(
        self,
        *,
        source: BatchSource,
        vault: Vault,
        principal: Principal,
        manifests: Mapping[int, Manifest],
        registry: DatasetRegistry,
        options: ExportOptions,
        engine: PrepareEngine | None = None,
        record_lineage: Callable[[str, Sequence[tuple[str, str]]], None] | None = None,
        on_problem: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.source = source
        self.vault = vault
        self.principal = principal
        self.manifests = manifests
        self.registry = registry
        self.options = options
        self.engine = engine or LocalEngine()
        self.record_lineage = record_lineage
        self.on_problem = on_problem

    # -- entry points ---------------------------------------------------------------------

    def export(self) -> ExportReport:
        """Add every batch not yet in the dataset at ``options.out`` (creating it if new)."""
        o = self.options
        state = self.registry.for_folder(o.out)
        if state is None:
            state = DatasetState.new(
                out=o.out.absolute(),
                format=o.format,
                purpose=o.purpose,
                image_format=o.image.format,
            )
            if o.key is not None:
                state.key = o.key
        elif state.format != o.format:
            raise ValueError(f"{o.out} holds a {state.format} dataset, not {o.format}")
        done = {b for b, e in state.batches.items() if e.status in (EXPORTED, REJECTED)}
        refs = (r for r in self.source.ordered(skip=done) if self._selected(r))
        return self._run(state, refs)

    def rebuild(self, old: DatasetState) -> ExportReport:
        """A new version of ``old`` from the batches it held, minus any that no longer open
        (erased contributors, destroyed periods) or are gone from the store."""
        o = self.options
        state = DatasetState.new(
            out=o.out.absolute(),
            format=old.format,
            purpose=old.purpose,
            image_format=o.image.format,
        )
        state.key = old.key  # pseudonyms and episode ids stay comparable across versions
        state.dataset_version = old.dataset_version + 1
        state.supersedes = old.dataset_id
        wanted = {b for b, e in old.batches.items() if e.status == EXPORTED}
        present = {r.batch_id: r for r in self.source.refs()}
        for gone in sorted(wanted - set(present)):
            state.batches[gone] = BatchEntry(
                old.batches[gone].contributor, FAILED, reason="no longer stored"
            )
        refs = (r for r in self.source.ordered() if r.batch_id in wanted)
        target = Path(state.out)
        if target.resolve() != Path(old.out).resolve():
            return self._run(state, refs)
        # Rebuilding in place: build beside it, then swap, so the erased data goes with it.
        building = target.with_name(target.name + ".rebuilding")
        if building.exists():
            shutil.rmtree(building)
        report = self._run(state, refs, folder=building)
        replace_folder(building, target)
        report.out = target
        report.files = [target / f.relative_to(building) for f in report.files]
        return report

    # -- the pipeline ---------------------------------------------------------------------

    def _selected(self, ref: BatchRef) -> bool:
        only = self.options.only_contributor
        return only is None or ref.contributor == only

    def _problem(self, kind: str, batch_id: str, reason: str) -> None:
        if self.on_problem is not None:
            self.on_problem(kind, batch_id, reason)

    def _unsealed(
        self,
        refs: Iterator[BatchRef],
        state: DatasetState,
        report: ExportReport,
        advance: Callable[[], None],
    ) -> Iterator[tuple[BatchRef, Unsealed]]:
        for chunk in _chunks(refs, UNSEAL_CHUNK):
            blobs: list[bytes] = []
            readable: list[BatchRef] = []
            for ref in chunk:
                report.batches_seen += 1
                try:
                    blobs.append(self.source.read(ref.batch_id))
                    readable.append(ref)
                except (KeyError, OSError) as exc:
                    self._fail(state, report, ref, f"cannot read the stored batch: {exc}")
                    advance()
            if not blobs:
                continue
            results = self.vault.unseal_many(
                blobs, principal=self.principal, purpose=self.options.purpose
            )
            for ref, res in zip(readable, results, strict=True):
                if isinstance(res, VaultError):
                    self._fail(state, report, ref, f"{type(res).__name__}: {res}")
                    advance()
                    continue
                yield ref, res

    def _fail(self, state: DatasetState, report: ExportReport, ref: BatchRef, why: str) -> None:
        state.batches[ref.batch_id] = BatchEntry(ref.contributor, FAILED, reason=why)
        report.failed.append((ref.batch_id, why))
        self._problem("failed", ref.batch_id, why)

    def _run(
        self, state: DatasetState, refs: Iterator[BatchRef], folder: Path | None = None
    ) -> ExportReport:
        o = self.options
        out = folder or Path(state.out)
        state.runs += 1
        report = ExportReport(state.dataset_id, state.dataset_version, out)
        writer = WRITERS[state.format](out, run=state.runs)
        streams: dict[str, DeviceStream] = {}
        lineage: list[tuple[str, str]] = []

        def stream(device: str) -> DeviceStream:
            if device not in streams:
                streams[device] = DeviceStream(state, o)
            return streams[device]

        def emit(rows: list[Row]) -> None:
            writer.write(rows)
            for r in rows:
                state.counts[r.action_type] = state.counts.get(r.action_type, 0) + 1
                app = r.app or ""
                state.apps[app] = state.apps.get(app, 0) + 1
                state.t_min = r.ts if state.t_min is None else min(state.t_min, r.ts)
                state.t_max = r.ts if state.t_max is None else max(state.t_max, r.ts)
            report.steps += len(rows)

        refs_list = list(refs)  # refs are metadata only; their number bounds the bar
        progress = Progress(
            TextColumn("export"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("batches, {task.fields[steps]} steps"),
            TimeElapsedColumn(),
            disable=not o.progress,
        )
        with progress:
            task = progress.add_task("export", total=len(refs_list), steps=0)

            def advance() -> None:
                progress.update(task, advance=1, steps=report.steps)

            unsealed = self._unsealed(iter(refs_list), state, report, advance)
            for ref, prepared in self.engine.prepare(unsealed, self.manifests, o.image):
                dev = stream(ref.device)
                if isinstance(prepared, RejectedBatch):
                    state.batches[ref.batch_id] = BatchEntry(
                        ref.contributor,
                        REJECTED,
                        manifest_version=ref.manifest_version,
                        reason=prepared.reason,
                    )
                    report.rejected.append((ref.batch_id, prepared.reason))
                    self._problem("rejected", ref.batch_id, prepared.reason)
                    emit(dev.interrupt("rejected_batch"))
                    advance()
                    continue
                before = report.steps
                emit(dev.batch(ref, prepared))
                report.issues.update(i.code for i in prepared.issues)
                state.batches[ref.batch_id] = BatchEntry(
                    ref.contributor,
                    EXPORTED,
                    steps=report.steps - before,
                    manifest_version=prepared.header.manifest_version,
                    redaction_version=prepared.header.redaction_version,
                )
                report.batches_exported += 1
                lineage.append((ref.batch_id, ref.contributor))
                advance()
            for dev in streams.values():
                emit(dev.finish())
                report.issues.update(dev.issues())
                report.episodes += len(dev.episodes)
        report.files = writer.close()
        state.steps += report.steps
        state.episodes += report.episodes
        for code, n in report.issues.items():
            state.issues[code] = state.issues.get(code, 0) + n
        self.registry.save(state)
        self.registry.mark_folder(state, out)
        (out / "README.md").write_text(render_card(state, self.manifests), "utf-8")
        if self.record_lineage is not None and lineage:
            self.record_lineage(state.dataset_id, lineage)
        return report


def replace_folder(built: Path, target: Path) -> None:
    """Swap a rebuilt dataset into place; the old files (with erased data) are removed."""
    if target.exists():
        shutil.rmtree(target)
    built.rename(target)
