"""Per-batch work after unsealing: second-pass validation and screenshot rebuilding.

Pure over its inputs and independent per batch, so the Ray engine runs it in workers and
the local engine in-process, with the same result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from keystep.dataset.frames import FrameRebuilder, ImageEncoding
from keystep.model.batch import BatchContent
from keystep.model.events import SCREEN_FRAME, Event
from keystep.model.manifest import Manifest, UndeclaredData
from keystep.seal.envelope import BatchHeader
from keystep.trajectory.reduce import Issue


@dataclass(slots=True)
class PreparedBatch:
    """A batch ready for reduction: its events, and each frame event's full screenshot."""

    header: BatchHeader
    events: list[Event]
    screenshots: dict[str, bytes] = field(default_factory=dict)  # frame event eid → image
    issues: list[Issue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RejectedBatch:
    """A batch that carried something its manifest does not declare: nothing is exported."""

    header: BatchHeader
    reason: str


def validate(
    header: BatchHeader, content: BatchContent, manifests: Mapping[int, Manifest]
) -> str | None:
    """Why the batch must be rejected (None: it is within its manifest)."""
    manifest = manifests.get(header.manifest_version)
    if manifest is None:
        return f"manifest v{header.manifest_version} is unknown to the builder"
    undeclared = sorted(set(header.kinds) - set(manifest.kinds))
    if undeclared:
        return f"header declares kinds outside manifest v{manifest.version}: {undeclared}"
    for event in content.events:
        try:
            manifest.check_event(event)
        except UndeclaredData as exc:
            return f"event {event.eid}: {exc}"
        if event.kind not in header.kinds:
            return f"event {event.eid}: kind {event.kind} is not in the batch header"
    return None


def prepare_batch(
    header: BatchHeader,
    content: BatchContent,
    manifests: Mapping[int, Manifest],
    encoding: ImageEncoding | None = None,
) -> PreparedBatch | RejectedBatch:
    reason = validate(header, content, manifests)
    if reason is not None:
        return RejectedBatch(header, reason)
    rebuilder = FrameRebuilder(content.frames, encoding)
    screenshots: dict[str, bytes] = {}
    for event in content.events:
        if event.kind == SCREEN_FRAME:
            image = rebuilder.rebuild(event)
            if image is not None:
                screenshots[event.eid] = image
    return PreparedBatch(header, content.events, screenshots, rebuilder.issues)
