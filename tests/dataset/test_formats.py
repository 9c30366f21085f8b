"""Every writer round-trips any row (hypothesis), and the schema is what DESIGN.md lists."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from keystep.dataset.hf import HFWriter
from keystep.dataset.parquet import ParquetWriter
from keystep.dataset.schema import SCHEMA, Row
from keystep.dataset.webdataset import WebDatasetWriter
from keystep.trajectory.actions import ACTION_TYPES

DESIGN_COLUMNS = [
    "episode_id",
    "step",
    "ts",
    "action_type",
    "action_code",
    "x",
    "y",
    "to_x",
    "to_y",
    "button",
    "text",
    "keys",
    "dx",
    "dy",
    "app",
    "window_title",
    "screen_w",
    "screen_h",
    "screenshot",
    "contributor",
]

small = st.one_of(st.none(), st.integers(-(2**20), 2**20))
rows = st.builds(
    Row,
    episode_id=st.from_regex(r"ep-[0-9a-f]{16}", fullmatch=True),
    step=st.integers(0, 10_000),
    ts=st.floats(0, 4e9, allow_nan=False),
    action_type=st.sampled_from(ACTION_TYPES),
    action_code=st.text(max_size=40),
    x=small,
    y=small,
    to_x=small,
    to_y=small,
    button=st.one_of(st.none(), st.sampled_from(["left", "right", "middle"])),
    text=st.one_of(st.none(), st.text(max_size=60)),
    keys=st.lists(st.text(min_size=1, max_size=8), max_size=4),
    dx=small,
    dy=small,
    app=st.one_of(st.none(), st.text(max_size=20)),
    window_title=st.one_of(st.none(), st.text(max_size=40)),
    screen_w=small,
    screen_h=small,
    screenshot=st.one_of(st.none(), st.binary(min_size=1, max_size=64)),
    contributor=st.from_regex(r"c-[0-9a-f]{16}", fullmatch=True),
)


def test_columns_are_the_documented_ones() -> None:
    assert SCHEMA.names == DESIGN_COLUMNS


def _as_dicts(found: list[Row]) -> list[dict[str, object]]:
    return [{**r.columns(), "screenshot": r.screenshot} for r in found]


@settings(max_examples=25, deadline=None)
@given(st.lists(rows, max_size=6))
def test_parquet_and_hf_round_trip(batch: list[Row]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        w = ParquetWriter(out / "p", run=1, rows_per_group=4)
        w.write(batch)
        files = w.close()
        got = [r for f in files for r in pq.read_table(f).to_pylist()]
        h = HFWriter(out / "h", run=1)
        h.write(batch)
        h.close()
        hf: list[dict[str, object]] = []
        for f in sorted((out / "h").glob("data-*.arrow")):
            with pa.OSFile(str(f), "rb") as src:
                hf += pa.ipc.open_stream(src).read_all().to_pylist()
    want = _as_dicts(batch)
    for found in (got, hf):
        for r in found:
            shot = r["screenshot"]
            r["screenshot"] = None if shot is None else shot["bytes"]  # type: ignore[index]
        assert found == want


@settings(max_examples=25, deadline=None)
@given(st.lists(rows, max_size=6, unique_by=lambda r: (r.episode_id, r.step)))
def test_webdataset_round_trip(batch: list[Row]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        w = WebDatasetWriter(Path(tmp), run=1, rows_per_shard=4)
        w.write(batch)
        found: list[dict[str, object]] = []
        for f in w.close():
            with tarfile.open(f) as tar:
                members = tar.getmembers()
                for m in members:
                    if m.name.endswith(".json"):
                        data = tar.extractfile(m)
                        assert data is not None
                        found.append(json.loads(data.read()))
    assert found == [r.columns() for r in batch]


def test_parquet_images_load_as_images(tmp_path: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 4), (1, 2, 3)).save(buf, "PNG")
    row = Row(
        "ep-0000000000000000",
        0,
        1.0,
        "click",
        "c",
        1,
        2,
        None,
        None,
        "left",
        None,
        [],
        None,
        None,
        "a",
        "t",
        8,
        4,
        buf.getvalue(),
        "c-0000000000000000",
    )
    w = ParquetWriter(tmp_path, run=1)
    w.write([row])
    w.close()
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path), split="train")
    assert ds[0]["screenshot"].size == (8, 4)
