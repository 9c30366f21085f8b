"""Batches: events and frame images collected until a count, size or age limit is reached.

This is also where the manifest is enforced: an event of an undeclared kind is dropped and
every other event is cut down to its declared fields before it joins the batch, so nothing
the manifest does not declare can reach a sealed batch.
"""

from __future__ import annotations

from typing import Any, Final

from keystep.model.batch import MAX_FRAMES, BatchContent, Monitor
from keystep.model.events import Event
from keystep.model.manifest import Manifest

_EVENT_OVERHEAD: Final = 64
# How long an open typing run may hold a batch past its time limit (the run closes after
# 2 s without a key, so this only matters for someone typing without pause).
TYPING_GRACE_S: Final = 10.0


class Batcher:
    def __init__(self, manifest: Manifest) -> None:
        b = manifest.batching
        self.max_events = int(b.get("max_events", 5000))
        self.max_bytes = int(b.get("max_bytes", 4_000_000))
        self.max_seconds = float(b.get("max_seconds", 60))
        self._manifest = manifest
        self._fields = {k: manifest.fields(k) for k in manifest.kinds}
        self.events: list[Event] = []
        self.frames: list[bytes] = []
        self.size = 0
        self.opened: float | None = None  # wall time the batch received its first event

    def declares(self, kind: str) -> bool:
        return kind in self._fields

    def add(self, event: Event, now: float) -> bool:
        """Add (projected to the manifest); False when the kind is not declared."""
        allowed = self._fields.get(event.kind)
        if allowed is None:
            return False
        projected = event.project(allowed)
        self._manifest.check_event(projected)
        self.events.append(projected)
        text = projected.data.get("text") or projected.data.get("title") or ""
        self.size += _EVENT_OVERHEAD + len(text)
        if self.opened is None:
            self.opened = now
        return True

    def add_frame(self, image: bytes, now: float) -> int:
        self.frames.append(image)
        self.size += len(image)
        if self.opened is None:
            self.opened = now
        return len(self.frames) - 1

    def frames_full(self) -> bool:
        return len(self.frames) >= MAX_FRAMES

    def empty(self) -> bool:
        return not self.events

    def due(self, now: float, *, typing_open: bool = False) -> bool:
        """Time to seal. A typing run still open at the time limit may finish first (for at
        most ``TYPING_GRACE_S`` more), so a word is not split into two steps at a batch
        boundary; the count and size limits never wait."""
        if not self.events:
            return False
        if (
            len(self.events) >= self.max_events
            or self.size >= self.max_bytes
            or len(self.frames) >= MAX_FRAMES - 1
        ):
            return True
        if self.opened is None:
            return False
        age = now - self.opened
        limit = self.max_seconds + (TYPING_GRACE_S if typing_open else 0.0)
        return age >= limit

    def span(self) -> tuple[float, float]:
        ts = [e.t for e in self.events]
        ends = [float(e.data["t_end"]) for e in self.events if "t_end" in e.data]
        return min(ts), max(ts + ends)

    def take(self, monitors: list[Monitor], meta: dict[str, Any]) -> BatchContent:
        """The batch in time order (stable: events stamped equal keep their arrival order)."""
        events = sorted(self.events, key=lambda e: e.t)
        content = BatchContent(
            events=events, frames=self.frames, monitors=list(monitors), meta=meta
        )
        self.drop()
        return content

    def drop(self) -> None:
        self.events, self.frames, self.size, self.opened = [], [], 0, None
