"""The batcher enforces the manifest: undeclared kinds and fields never join a batch."""

from __future__ import annotations

import yaml

from keystep.capture.batcher import TYPING_GRACE_S, Batcher
from keystep.model.events import Event
from keystep.model.manifest import default_manifest_text, load_manifest


def test_undeclared_kinds_and_fields_are_dropped() -> None:
    doc = yaml.safe_load(default_manifest_text())
    del doc["collect"]["pointer.move"]
    doc["collect"]["window.focus"]["fields"] = ["window", "app", "title"]
    b = Batcher(load_manifest(yaml.safe_dump(doc)))
    assert not b.add(Event(1.0, "pointer.move", {"x": 1, "y": 2}), 1.0)
    assert b.add(
        Event(
            2.0,
            "window.focus",
            {"window": 1, "app": "A", "title": "T", "pid": 9, "geometry": [0, 0, 1, 1]},
        ),
        2.0,
    )
    content = b.take([], {})
    assert [(e.kind, e.data) for e in content.events] == [
        ("window.focus", {"window": 1, "app": "A", "title": "T"})
    ]
    assert b.empty()


def test_due_by_count_and_age() -> None:
    doc = yaml.safe_load(default_manifest_text())
    doc["batching"] = {"max_events": 3, "max_bytes": 10_000_000, "max_seconds": 5}
    b = Batcher(load_manifest(yaml.safe_dump(doc)))
    b.add(Event(1.0, "gap", {"t_end": 2.0}), 100.0)
    assert not b.due(101.0) and b.due(105.0)
    b.add(Event(3.0, "gap", {"t_end": 4.0}), 101.0)
    b.add(Event(0.5, "gap", {"t_end": 0.7}), 101.0)
    assert b.due(101.0)
    assert b.span() == (0.5, 4.0)
    assert [e.t for e in b.take([], {}).events] == [0.5, 1.0, 3.0]


def test_an_open_typing_run_may_finish_but_never_holds_a_full_batch() -> None:
    doc = yaml.safe_load(default_manifest_text())
    doc["batching"] = {"max_events": 3, "max_bytes": 10_000_000, "max_seconds": 5}
    b = Batcher(load_manifest(yaml.safe_dump(doc)))
    b.add(Event(1.0, "gap", {"t_end": 2.0}), 100.0)
    # At the time limit a run still being typed keeps the batch open (no word split in two) ...
    assert b.due(105.0) and not b.due(105.0, typing_open=True)
    # ... for a bounded time only (the crash-loss bound stays stated) ...
    assert b.due(105.0 + TYPING_GRACE_S, typing_open=True)
    # ... and the count limit never waits.
    b.add(Event(3.0, "gap", {"t_end": 4.0}), 101.0)
    b.add(Event(4.0, "gap", {"t_end": 4.5}), 101.0)
    assert b.due(101.0, typing_open=True)
