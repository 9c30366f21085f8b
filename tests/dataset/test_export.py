"""The export pipeline end to end: sealed batches through the vault into each format."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from PIL import Image
from synth import BUILDER, STEWARD, Device, Session, scripted_batches

from keystep.audit.events import UnsealBatchEvent
from keystep.dataset.export import Exporter, ExportOptions, ExportReport
from keystep.dataset.frames import ImageEncoding
from keystep.dataset.source import MemorySource
from keystep.dataset.state import DatasetRegistry
from keystep.model.batch import BatchContent, Monitor
from keystep.model.events import Event
from keystep.model.manifest import Manifest, default_manifest, manifest_from_mapping
from keystep.policy.model import Principal
from keystep.seal.envelope import parse_envelope
from keystep.vault.local import LocalVault

MANIFESTS = {1: default_manifest()}
LOSSLESS = ImageEncoding("png")


def export(
    tmp: Path,
    source: MemorySource,
    vault: LocalVault,
    out: str = "out",
    manifests: dict[int, Manifest] | None = None,
    principal: Principal = BUILDER,
    **kw: Any,
) -> tuple[ExportReport, list[tuple[str, str, str]]]:
    problems: list[tuple[str, str, str]] = []
    kw.setdefault("image", LOSSLESS)
    ex = Exporter(
        source=source,
        vault=vault,
        principal=principal,
        manifests=manifests or MANIFESTS,
        registry=DatasetRegistry(tmp / "home" / "datasets"),
        options=ExportOptions(out=tmp / out, **kw),
        on_problem=lambda *p: problems.append(p),
    )
    return ex.export(), problems


def load(tmp: Path, out: str = "out") -> datasets.Dataset:
    ds = datasets.load_dataset("parquet", data_dir=str(tmp / out), split="train")
    assert isinstance(ds, datasets.Dataset)
    return ds


def test_every_scripted_action_comes_back_with_the_screen_before_it(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    session = Session(seed=3)
    source = MemorySource(scripted_batches(device, session, batches=3, actions_per_batch=12))
    report, problems = export(tmp_path, source, vault)
    assert problems == [] and report.batches_exported == 3
    ds = load(tmp_path)
    assert len(ds) == len(session.truth) == report.steps
    for row, truth in zip(ds, session.truth, strict=True):
        got = (row["action_type"], row["x"], row["y"], row["to_x"], row["to_y"], row["text"])
        want = (truth.action_type, truth.x, truth.y, truth.to_x, truth.to_y, truth.text)
        assert got == want
        assert tuple(row["keys"]) == truth.keys
        assert row["dy"] == truth.dy and row["app"] == truth.app
        assert truth.screen is not None
        assert np.array_equal(np.asarray(row["screenshot"]), np.asarray(truth.screen))
    assert set(ds["episode_id"]) == {ds[0]["episode_id"]}
    assert ds["step"] == list(range(len(ds)))


def test_jpeg_screenshots_are_close_to_the_screen(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    session = Session(seed=4)
    source = MemorySource(scripted_batches(device, session, batches=1, actions_per_batch=5))
    export(tmp_path, source, vault, image=ImageEncoding("jpeg"))
    for row, truth in zip(load(tmp_path), session.truth, strict=True):
        diff = np.abs(np.asarray(row["screenshot"], dtype=int) - np.asarray(truth.screen))
        assert diff.mean() < 2.0


def test_every_batch_opened_is_in_the_audit_log(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    source = MemorySource(scripted_batches(device, Session(), batches=2, actions_per_batch=3))
    export(tmp_path, source, vault)
    me = Principal("alice", "contributor")
    feed = vault.feed(device.pseudonym, principal=me, purpose="contributor-access")
    opened = {e.batch_id for e in feed if isinstance(e, UnsealBatchEvent) and e.allowed}
    assert opened == {r.batch_id for r in source.refs()}
    assert {e.purpose for e in feed if isinstance(e, UnsealBatchEvent)} == {"model-training"}


def test_hf_format_loads_from_disk(tmp_path: Path, vault: LocalVault, device: Device) -> None:
    session = Session(seed=5)
    source = MemorySource(scripted_batches(device, session, batches=2, actions_per_batch=4))
    export(tmp_path, source, vault, format="hf")
    ds = datasets.load_from_disk(str(tmp_path / "out"))
    assert isinstance(ds, datasets.Dataset)
    assert ds["action_type"] == [t.action_type for t in session.truth]
    assert ds[0]["screenshot"].size == (320, 200)


def test_webdataset_shards(tmp_path: Path, vault: LocalVault, device: Device) -> None:
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    session = Session(seed=6)
    source = MemorySource(scripted_batches(device, session, batches=2, actions_per_batch=4))
    report, _ = export(tmp_path, source, vault, format="webdataset")
    urls = [str(f) for f in report.files]
    samples = []
    for url in urls:
        with open(url, "rb") as fh:
            files = ({**f, "__url__": url} for f in tar_file_iterator(fh))
            samples += list(group_by_keys(files))
    assert [json.loads(s["json"])["action_type"] for s in samples] == [
        t.action_type for t in session.truth
    ]
    first = Image.open(io.BytesIO(samples[0]["png"]))
    assert first.size == (320, 200)
    with tarfile.open(urls[0]) as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_rerunning_adds_only_new_batches(tmp_path: Path, vault: LocalVault, device: Device) -> None:
    session = Session(seed=7)
    batches = list(scripted_batches(device, session, batches=4, actions_per_batch=5))
    source = MemorySource(batches[:2])
    first, _ = export(tmp_path, source, vault)
    stamp = {f: f.stat().st_mtime_ns for f in first.files}
    again, _ = export(tmp_path, source, vault)
    assert (again.batches_seen, again.steps) == (0, 0)
    for blob in batches[2:]:
        source.add(blob)
    third, _ = export(tmp_path, source, vault)
    assert third.batches_exported == 2
    assert {f: f.stat().st_mtime_ns for f in first.files} == stamp
    ds = load(tmp_path)
    assert ds["action_type"] == [t.action_type for t in session.truth]
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"- Steps: {len(session.truth)}" in card
    assert all(r.batch_id in card for r in source.refs())


def test_tampered_and_truncated_batches_are_skipped_and_reported(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    session = Session(seed=8)
    good1, bad, good2, cut = scripted_batches(device, session, batches=4, actions_per_batch=3)
    tampered = bytearray(bad)
    tampered[len(tampered) // 2] ^= 0x01
    source = MemorySource([good1, bytes(tampered), good2])
    source.add(cut[: len(cut) // 2], batch_id="truncated")
    report, problems = export(tmp_path, source, vault)
    assert report.batches_exported == 2
    assert sorted(p[0] for p in problems) == ["failed", "failed"]
    assert {p[1] for p in problems} == {parse_envelope(b).header.batch_id for b in (bad, cut)}
    assert all("BadEnvelope" in p[2] for p in problems)
    # Steps of the good batches only; the missing batch splits the episode.
    assert len(load(tmp_path)) == 6
    assert len(set(load(tmp_path)["episode_id"])) == 2


def _content(events: list[Event], frames: list[bytes] | None = None) -> BatchContent:
    return BatchContent(events, frames or [], [Monitor(0, 0, 320, 200, True)], {})


def test_undeclared_fields_reject_the_whole_batch(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    raw = dict(default_manifest().raw)
    raw["collect"] = dict(raw["collect"])
    raw["collect"]["window.focus"] = dict(raw["collect"]["window.focus"], fields=["window", "app"])
    strict = {1: manifest_from_mapping(raw)}
    ok = device.seal(_content([Event(1.0, "window.focus", {"window": "w", "app": "a"})]))
    over = device.seal(
        _content([Event(2.0, "window.focus", {"window": "w", "app": "a", "title": "secret"})])
    )
    newer = device.seal(_content([]), manifest_version=9)
    report, problems = export(tmp_path, MemorySource([ok, over, newer]), vault, manifests=strict)
    assert report.batches_exported == 1
    reasons = sorted(r for _, r in report.rejected)
    assert len(reasons) == 2
    assert "['title'] are not in manifest v1" in reasons[1] or "title" in reasons[0] + reasons[1]
    assert any("manifest v9 is unknown" in r for r in reasons)
    assert [p[0] for p in problems] == ["rejected", "rejected"]


def test_an_event_kind_from_a_newer_agent_is_reported(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    blob = device.seal(_content([Event(1.0, "gaze.point", {"x": 1})]), kinds=("gap",))
    report, problems = export(tmp_path, MemorySource([blob]), vault)
    assert report.batches_exported == 0
    assert "unknown event kind 'gaze.point'" in problems[0][2]


def test_missing_frame_and_release_without_press_make_nothing_up(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    events = [
        Event(1.0, "pointer.up", {"x": 5, "y": 5, "button": "left"}),
        Event(1.5, "screen.frame", {"frame": 7, "rect": [0, 0, 320, 200], "w": 320, "h": 200}),
        Event(2.0, "key.down", {"key": "enter", "repeat": False}),
        Event(2.1, "key.up", {"key": "enter"}),
    ]
    report, _ = export(tmp_path, MemorySource([device.seal(_content(events))]), vault)
    ds = load(tmp_path)
    assert ds["action_type"] == ["key"] and ds[0]["screenshot"] is None
    assert report.issues == {"release_without_press": 1, "missing_frame": 1}


def test_mine_exports_only_the_contributors_own_batches(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    bob = Device(vault, "bob", "dev-bob")
    mine = list(scripted_batches(device, Session(seed=1), batches=2, actions_per_batch=2))
    theirs = list(scripted_batches(bob, Session(seed=2), batches=2, actions_per_batch=2))
    report, problems = export(
        tmp_path,
        MemorySource(mine + theirs),
        vault,
        principal=Principal("alice", "contributor"),
        purpose="contributor-access",
        only_contributor=device.pseudonym,
    )
    assert (report.batches_exported, problems) == (2, [])
    assert len(set(load(tmp_path)["contributor"])) == 1


def test_pseudonyms_differ_between_datasets(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    source = MemorySource(scripted_batches(device, Session(), batches=1, actions_per_batch=3))
    export(tmp_path, source, vault, out="a")
    export(tmp_path, source, vault, out="b")
    a, b = load(tmp_path, "a"), load(tmp_path, "b")
    assert set(a["contributor"]).isdisjoint(b["contributor"])
    assert set(a["episode_id"]).isdisjoint(b["episode_id"])
    assert device.pseudonym not in (tmp_path / "a" / "README.md").read_text()


def test_rebuild_after_erasure_drops_the_erased_contributor(
    tmp_path: Path, vault: LocalVault, device: Device
) -> None:
    bob = Device(vault, "bob", "dev-bob")
    source = MemorySource(
        list(scripted_batches(device, Session(seed=1), batches=2, actions_per_batch=3))
        + list(scripted_batches(bob, Session(seed=2), batches=2, actions_per_batch=3))
    )
    report, _ = export(tmp_path, source, vault)
    before = load(tmp_path)
    assert len(set(before["contributor"])) == 2
    vault.erase_contributor(bob.pseudonym, by=STEWARD, justification="request")
    registry = DatasetRegistry(tmp_path / "home" / "datasets")
    old = registry.load(report.dataset_id)
    problems: list[tuple[str, str, str]] = []
    rebuilt = Exporter(
        source=source,
        vault=vault,
        principal=BUILDER,
        manifests=MANIFESTS,
        registry=registry,
        options=ExportOptions(out=tmp_path / "out", image=LOSSLESS),
        on_problem=lambda *p: problems.append(p),
    ).rebuild(old)
    assert rebuilt.dataset_version == 2 and len(problems) == 2
    after = load(tmp_path)
    assert len(after) == 6 and len(set(after["contributor"])) == 1
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"supersedes `{report.dataset_id}`" in card
    assert not (tmp_path / "out.rebuilding").exists()


@pytest.mark.parametrize("fmt", ["parquet", "hf", "webdataset"])
def test_formats_write_nothing_when_there_is_nothing(
    tmp_path: Path, vault: LocalVault, fmt: str
) -> None:
    report, _ = export(tmp_path, MemorySource(), vault, format=fmt)
    assert report.steps == 0
    assert (tmp_path / "out" / "README.md").exists()


@pytest.mark.parametrize("fmt", ["parquet", "hf", "webdataset"])
def test_replay_reads_an_episode_back_from_each_format(
    tmp_path: Path, vault: LocalVault, device: Device, fmt: str
) -> None:
    from keystep.dataset.labels import episode_ids
    from keystep.dataset.replay import load_episode, plan

    session = Session(seed=9)
    source = MemorySource(scripted_batches(device, session, batches=2, actions_per_batch=3))
    export(tmp_path, source, vault, format=fmt)
    (episode,) = episode_ids(tmp_path / "out")
    rows = load_episode(tmp_path / "out", episode)
    steps = plan(rows)
    assert [r["action_type"] for r in sorted(rows, key=lambda r: r["step"])] == [
        t.action_type for t in session.truth
    ]
    assert len(steps) == len(session.truth) and all(s.commands for s in steps)
