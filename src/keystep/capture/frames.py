"""Kept frames: the cap on frames per second and the keyframe + patch encoding.

Every batch starts with a keyframe (the whole virtual screen); each later frame is a patch
holding only the bounding rectangle of what changed since the previous kept frame (``base``
is that frame's index in the batch), so a reader rebuilds any frame by applying patches in
order. Images are lossless WebP at low effort: on UI screenshots it is several times smaller
than PNG at a similar CPU cost (bench/agent_overhead.py measures both).
"""

from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage

from keystep.capture.sources.base import Grab

Image = npt.NDArray[np.uint8]

# A patch bigger than this share of the screen is sent as a keyframe instead.
KEYFRAME_SHARE: Final = 0.6
CODEC: Final = "webp"


def to_rgb(grab: Grab) -> Image:
    """BGRA bytes to a writable HxWx3 RGB array (Pillow's raw decoder does it in C)."""
    img = PILImage.frombuffer("RGB", (grab.w, grab.h), grab.bgra, "raw", "BGRX", 0, 1)
    return np.array(img, dtype=np.uint8)


def encode_image(rgb: Image, codec: str = CODEC) -> bytes:
    buf = io.BytesIO()
    img = PILImage.fromarray(rgb, "RGB")
    if codec == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="WEBP", lossless=True, method=1, quality=10)
    return buf.getvalue()


def decode_image(data: bytes) -> Image:
    with PILImage.open(io.BytesIO(data)) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)


def changed_rect(prev: Image, cur: Image) -> tuple[int, int, int, int] | None:
    """Bounding box [x, y, w, h] of the pixels that differ (None when nothing changed)."""
    h = cur.shape[0]
    # Rows first over flat (h, w*3) views: reducing along the contiguous axis is ~15x faster
    # than an any() over the 3-wide channel axis of the whole screen.
    rows = np.flatnonzero((prev.reshape(h, -1) != cur.reshape(h, -1)).any(axis=1))
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero((prev[y0:y1] != cur[y0:y1]).any(axis=0).any(axis=1))
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    return (x0, y0, x1 - x0, y1 - y0)


class FrameRate:
    """At most ``max_fps`` kept frames in any one-second window."""

    def __init__(self, max_fps: float) -> None:
        self._max = max(1, int(max_fps)) if max_fps >= 1 else 1
        self._min_gap = 1.0 / max_fps if max_fps < 1 else 0.0
        self._kept: deque[float] = deque()

    def allows(self, t: float) -> bool:
        while self._kept and self._kept[0] <= t - 1.0:
            self._kept.popleft()
        if self._min_gap and self._kept and t - self._kept[-1] < self._min_gap:
            return False
        return len(self._kept) < self._max

    def kept(self, t: float) -> None:
        self._kept.append(t)


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    data: dict[str, Any]  # screen.frame fields except frame/window/redactions
    image: bytes


class FrameEncoder:
    """Turns successive kept (already redacted) frames into keyframes and patches."""

    def __init__(self, codec: str = CODEC) -> None:
        self.codec = codec
        self._prev: Image | None = None
        self._prev_index = -1

    def new_batch(self) -> None:
        self._prev = None
        self._prev_index = -1

    def encode(self, rgb: Image, index: int) -> EncodedFrame:
        """Encode ``rgb`` as frame ``index`` of the current batch."""
        h, w = rgb.shape[:2]
        prev, base = self._prev, self._prev_index
        self._prev, self._prev_index = rgb, index
        if prev is not None and prev.shape == rgb.shape:
            rect = changed_rect(prev, rgb)
            if rect is None:
                rect = (0, 0, 1, 1)  # unchanged: a one-pixel patch keeps "one image per frame"
            x, y, pw, ph = rect
            if pw * ph <= KEYFRAME_SHARE * w * h:
                patch = np.ascontiguousarray(rgb[y : y + ph, x : x + pw])
                return EncodedFrame(
                    {"rect": [x, y, pw, ph], "base": base, "w": w, "h": h},
                    encode_image(patch, self.codec),
                )
        return EncodedFrame({"rect": [0, 0, w, h], "w": w, "h": h}, encode_image(rgb, self.codec))


def rebuild_frames(events: list[Any], frames: list[bytes]) -> dict[int, Image]:
    """Full images for every screen.frame of a batch, by frame index (for readers and tests)."""
    out: dict[int, Image] = {}
    for ev in events:
        if ev.kind != "screen.frame":
            continue
        idx = ev.data["frame"]
        x, y, w, h = ev.data["rect"]
        img = decode_image(frames[idx])
        if "base" not in ev.data:
            out[idx] = img
            continue
        full = out[ev.data["base"]].copy()
        full[y : y + h, x : x + w] = img
        out[idx] = full
    return out
