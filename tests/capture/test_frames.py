"""Keyframe + patch encoding rebuilds every kept frame exactly; the frame-rate cap holds."""

from __future__ import annotations

import numpy as np
import pytest

from keystep.capture.frames import FrameEncoder, FrameRate, changed_rect, rebuild_frames
from keystep.model.events import Event


@pytest.mark.parametrize("codec", ["webp", "png"])
def test_patches_rebuild_the_frames(codec: str) -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    frames = [base.copy()]
    nxt = base.copy()
    nxt[10:30, 50:90] = 7
    frames.append(nxt)
    frames.append(nxt.copy())  # unchanged
    last = nxt.copy()
    last[100:120, 0:5] = 200
    frames.append(last)
    enc = FrameEncoder(codec)
    events, blobs = [], []
    for i, f in enumerate(frames):
        e = enc.encode(f.copy(), i)
        blobs.append(e.image)
        events.append(Event(float(i), "screen.frame", {"frame": i, **e.data}))
    assert "base" not in events[0].data
    assert events[1].data["rect"] == [50, 10, 40, 20] and events[1].data["base"] == 0
    assert events[2].data["rect"] == [0, 0, 1, 1]
    rebuilt = rebuild_frames(events, blobs)
    for i, f in enumerate(frames):
        assert np.array_equal(rebuilt[i], f)
    enc.new_batch()
    assert "base" not in enc.encode(last.copy(), 0).data


def test_changed_rect_none_when_equal() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    assert changed_rect(a, a.copy()) is None


def test_frame_rate_cap() -> None:
    cap = FrameRate(2)
    kept = 0
    for i in range(20):
        t = i * 0.1
        if cap.allows(t):
            cap.kept(t)
            kept += 1
    assert kept == 4
