"""What a sealed batch carries once opened: events, frame images, monitor layout."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, Final

from keystep.model.events import Event, EventError

# Bump whenever the layout below changes; readers refuse versions they do not know.
CONTENT_VERSION: Final = 1
_MAGIC: Final = b"KSC1"
_LEN: Final = struct.Struct(">I")
MAX_FRAMES: Final = 4096


class ContentError(ValueError):
    """Batch content that does not decode."""


@dataclass(frozen=True, slots=True)
class Monitor:
    x: int
    y: int
    w: int
    h: int
    primary: bool = False


@dataclass(slots=True)
class BatchContent:
    """Events in time order, encoded frame images referenced by ``screen.frame`` events."""

    events: list[Event] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    monitors: list[Monitor] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def encode_content(c: BatchContent) -> bytes:
    """``KSC1 ‖ u32 len ‖ JSON index ‖ frame bytes…`` (frames stay binary: no base64)."""
    index = {
        "v": CONTENT_VERSION,
        "events": [e.to_wire() for e in c.events],
        "monitors": [[m.x, m.y, m.w, m.h, m.primary] for m in c.monitors],
        "meta": c.meta,
        "frames": [len(f) for f in c.frames],
    }
    head = json.dumps(index, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"".join([_MAGIC, _LEN.pack(len(head)), head, *c.frames])


def decode_content(data: bytes, *, batch_id: str = "") -> BatchContent:
    """Decode, giving each event the id ``<batch_id>:<index>``. Raises ContentError."""
    if data[:4] != _MAGIC or len(data) < 8:
        raise ContentError("batch content has no KSC1 magic")
    (n,) = _LEN.unpack_from(data, 4)
    end = 8 + n
    if end > len(data):
        raise ContentError("batch content index is truncated")
    try:
        index = json.loads(data[8:end])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContentError("batch content index is not JSON") from exc
    if not isinstance(index, dict) or index.get("v") != CONTENT_VERSION:
        raise ContentError(f"unknown batch content version {index.get('v')!r:.20}")
    sizes = index.get("frames", [])
    if len(sizes) > MAX_FRAMES or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise ContentError("batch content frame table is malformed")
    if end + sum(sizes) != len(data):
        raise ContentError("batch content frame bytes do not match the frame table")
    frames: list[bytes] = []
    pos = end
    for size in sizes:
        frames.append(data[pos : pos + size])
        pos += size
    events: list[Event] = []
    for i, raw in enumerate(index.get("events", [])):
        try:
            ev = Event.from_wire(raw)
        except EventError as exc:
            raise ContentError(f"event {i}: {exc}") from exc
        ev.eid = f"{batch_id}:{i}"
        events.append(ev)
    try:
        monitors = [
            Monitor(int(x), int(y), int(w), int(h), bool(p))
            for x, y, w, h, p in index.get("monitors", [])
        ]
    except (TypeError, ValueError) as exc:
        raise ContentError("batch content monitor layout is malformed") from exc
    meta = index.get("meta", {})
    if not isinstance(meta, dict):
        raise ContentError("batch content meta is not a mapping")
    return BatchContent(events=events, frames=frames, monitors=monitors, meta=meta)
