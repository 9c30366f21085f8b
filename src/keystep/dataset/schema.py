"""The trajectory dataset's row format (DESIGN.md, formats): one place for every writer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from keystep.trajectory.episodes import Placed

# Bump when a column is added, removed or changes meaning; the card and every file say it.
DATASET_FORMAT_VERSION: Final = 1

IMAGE_TYPE: Final = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

SCHEMA: Final = pa.schema(
    [
        ("episode_id", pa.string()),
        ("step", pa.int32()),
        ("ts", pa.float64()),
        ("action_type", pa.string()),
        ("action_code", pa.string()),
        ("x", pa.int32()),
        ("y", pa.int32()),
        ("to_x", pa.int32()),
        ("to_y", pa.int32()),
        ("button", pa.string()),
        ("text", pa.string()),
        ("keys", pa.list_(pa.string())),
        ("dx", pa.int32()),
        ("dy", pa.int32()),
        ("app", pa.string()),
        ("window_title", pa.string()),
        ("screen_w", pa.int32()),
        ("screen_h", pa.int32()),
        ("screenshot", IMAGE_TYPE),
        ("contributor", pa.string()),
    ]
)

# Hugging Face `datasets` reads this from the Arrow/Parquet schema metadata, so that
# `screenshot` loads as an Image and the rest with these exact types.
HF_FEATURES: Final[dict[str, Any]] = {
    "episode_id": {"dtype": "string", "_type": "Value"},
    "step": {"dtype": "int32", "_type": "Value"},
    "ts": {"dtype": "float64", "_type": "Value"},
    "action_type": {"dtype": "string", "_type": "Value"},
    "action_code": {"dtype": "string", "_type": "Value"},
    "x": {"dtype": "int32", "_type": "Value"},
    "y": {"dtype": "int32", "_type": "Value"},
    "to_x": {"dtype": "int32", "_type": "Value"},
    "to_y": {"dtype": "int32", "_type": "Value"},
    "button": {"dtype": "string", "_type": "Value"},
    "text": {"dtype": "string", "_type": "Value"},
    "keys": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"},
    "dx": {"dtype": "int32", "_type": "Value"},
    "dy": {"dtype": "int32", "_type": "Value"},
    "app": {"dtype": "string", "_type": "Value"},
    "window_title": {"dtype": "string", "_type": "Value"},
    "screen_w": {"dtype": "int32", "_type": "Value"},
    "screen_h": {"dtype": "int32", "_type": "Value"},
    "screenshot": {"_type": "Image"},
    "contributor": {"dtype": "string", "_type": "Value"},
}


def schema_with_metadata() -> pa.Schema:
    meta = {
        b"huggingface": json.dumps({"info": {"features": HF_FEATURES}}).encode(),
        b"keystep": json.dumps({"dataset_format_version": DATASET_FORMAT_VERSION}).encode(),
    }
    return SCHEMA.with_metadata(meta)


@dataclass(frozen=True, slots=True)
class Row:
    """One step as written: the action, its observation, and the per-dataset pseudonym."""

    episode_id: str
    step: int
    ts: float
    action_type: str
    action_code: str
    x: int | None
    y: int | None
    to_x: int | None
    to_y: int | None
    button: str | None
    text: str | None
    keys: list[str]
    dx: int | None
    dy: int | None
    app: str | None
    window_title: str | None
    screen_w: int | None
    screen_h: int | None
    screenshot: bytes | None
    contributor: str

    @classmethod
    def of(cls, placed: Placed, *, screenshot: bytes | None, contributor: str) -> Row:
        a, s = placed.step.action, placed.step
        return cls(
            episode_id=placed.episode_id,
            step=placed.index,
            ts=a.t,
            action_type=a.action_type,
            action_code=a.action_code,
            x=a.x,
            y=a.y,
            to_x=a.to_x,
            to_y=a.to_y,
            button=a.button,
            text=a.text,
            keys=list(a.keys),
            dx=a.dx,
            dy=a.dy,
            app=s.app,
            window_title=s.window_title,
            screen_w=s.screen_w,
            screen_h=s.screen_h,
            screenshot=screenshot,
            contributor=contributor,
        )

    def columns(self) -> dict[str, Any]:
        """The row without its image (the JSON part of a WebDataset sample)."""
        return {name: getattr(self, name) for name in SCHEMA.names if name != "screenshot"}


def to_table(rows: list[Row]) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for r in rows:
        for name in SCHEMA.names:
            value = getattr(r, name)
            if name == "screenshot":
                value = None if value is None else {"bytes": value, "path": None}
            cols[name].append(value)
    return pa.Table.from_pydict(cols, schema=schema_with_metadata())
