"""Keyframe + patch encoding rebuilds every kept frame exactly; the frame-rate cap holds."""

from __future__ import annotations

import numpy as np
import pytest

from keystep.capture.frames import (
    FrameEncoder,
    FrameRate,
    changed_rect,
    changed_rect_raw,
    pil_rect,
    rebuild_frames,
    to_rgb,
)
from keystep.capture.sources.base import Grab
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


def _grab(t: float, rgb: np.ndarray) -> Grab:
    h, w = rgb.shape[:2]
    bgrx = np.zeros((h, w, 4), np.uint8)
    bgrx[..., :3] = rgb[..., ::-1]
    return Grab(t, 0, 0, w, h, bytearray(bgrx.tobytes()))


def test_raw_grabs_rebuild_exactly_with_their_own_blackout() -> None:
    """Diffing raw grabs and converting only the change gives the same frames as converting
    whole grabs, also when an excluded window appears, moves or goes with no pixel change."""
    rng = np.random.default_rng(2)
    screens = [rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)]
    for _ in range(4):
        nxt = screens[-1].copy()
        nxt[40:60, 100:150] = rng.integers(0, 255, (20, 50, 3), dtype=np.uint8)
        screens.append(nxt)
    screens.append(screens[-1].copy())  # nothing changed
    blackouts: list[list[tuple[int, int, int, int]]] = [
        [],
        [(10, 10, 30, 20)],  # appears over unchanged pixels
        [(15, 12, 30, 20)],  # moves
        [(15, 12, 30, 20), (-5, 100, 20, 40)],  # a second one, partly off screen
        [],  # both gone
        [],
    ]
    enc = FrameEncoder()
    events, blobs, expected = [], [], []
    for i, (rgb, bo) in enumerate(zip(screens, blackouts, strict=True)):
        e = enc.encode_grab(_grab(float(i), rgb), i, bo)
        blobs.append(e.image)
        events.append(Event(float(i), "screen.frame", {"frame": i, **e.data}))
        want = rgb.copy()
        for x, y, w, h in bo:
            want[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 0
        expected.append(want)
    assert "base" not in events[0].data
    # Patches, not keyframes, where the change is small (the appearing blackout included).
    assert events[1].data["base"] == 0 and events[1].data["rect"] == [10, 10, 140, 50]
    assert events[5].data["base"] == 4 and events[5].data["rect"] == [0, 0, 1, 1]
    rebuilt = rebuild_frames(events, blobs)
    for i, want in enumerate(expected):
        assert np.array_equal(rebuilt[i], want), i


def test_pil_rect_converts_only_the_rectangle() -> None:
    rgb = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    grab = _grab(0.0, rgb)
    assert np.array_equal(np.asarray(pil_rect(grab, (2, 1, 3, 4))), rgb[1:5, 2:5])
    assert np.array_equal(np.asarray(pil_rect(grab, (0, 0, 8, 6))), to_rgb(grab))


@pytest.mark.parametrize("shape", [(50, 37), (33, 64)])  # odd width; height not a block multiple
def test_changed_rect_raw_finds_the_exact_box(shape: tuple[int, int]) -> None:
    """The block-wise row scan and the column scan give the box a pixel-by-pixel compare gives,
    for changes on the first and last rows and columns, single pixels and block edges."""
    h, w = shape
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    prev = _grab(0.0, rgb)
    assert changed_rect_raw(prev, prev) is None  # the very same grab, reused
    assert changed_rect_raw(prev, _grab(0.0, rgb)) is None
    spots = [(0, 0), (h - 1, w - 1), (15, 3), (16, w - 2), (31, 0), (h // 2, w // 2), (h - 17, 9)]
    for i, (y, x) in enumerate(spots):
        for other in spots[i:]:
            cur = rgb.copy()
            for yy, xx in {(y, x), other}:
                cur[yy, xx, i % 3] ^= 1
            ys, xs = np.nonzero((cur != rgb).any(axis=2))
            want = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert changed_rect_raw(prev, _grab(1.0, cur)) == want, ((y, x), other)
