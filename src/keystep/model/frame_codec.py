"""The image codec of the frames inside a batch: zstd-compressed binary PPM (``zstd-ppm``).

Kept frames are UI screenshots and patches of them. On such screens lossless WebP (the
codec before this one) is about as small, but costs 5-30x the CPU to encode: 7 ms for a
plain 1280x800 screen and 120 ms for a dense one on the 2-core test machine, against 1-4 ms
for zstd over the raw pixels, and the agent encodes a keyframe at every batch. Frames of
batches written with WebP or PNG (batch meta ``codec``) still open, told apart by their
magic bytes. Writer and readers (``keystep.capture.frames``, ``keystep.dataset.frames``)
both go through this module.
"""

from __future__ import annotations

import io
import threading
from typing import Final

import zstandard
from PIL import Image, UnidentifiedImageError

CODEC: Final = "zstd-ppm"
LEVEL: Final = 3
# Larger frames are refused when read: a frame claims to be a screen, not a bomb.
MAX_PIXELS: Final = 16384 * 16384
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_PPM_HEADER_MAX: Final = 32

_local = threading.local()


class FrameError(ValueError):
    """A frame's bytes do not decode to an image (or claim one larger than allowed)."""


def _compressor() -> zstandard.ZstdCompressor:
    c: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(level=LEVEL)
    return c


def encode_frame(image: Image.Image) -> bytes:
    """An RGB image as one zstd frame (content size recorded) of a binary PPM."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    return _compressor().compress(b"P6\n%d %d\n255\n" % (w, h) + image.tobytes())


def open_frame(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The RGB image of one frame of any codec keystep has written; :class:`FrameError`
    for bytes that are not one, or claim more than ``max_pixels`` (a screen, not a bomb)."""
    if data[:4] == ZSTD_MAGIC:
        limit = 3 * max_pixels + _PPM_HEADER_MAX
        try:
            size = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise FrameError("not a zstd frame") from exc
        if size < 0 or size > limit:
            raise FrameError("frame size unknown or too large")
        try:
            data = zstandard.ZstdDecompressor().decompress(data, max_output_size=limit)
        except zstandard.ZstdError as exc:
            raise FrameError("frame does not decompress") from exc
        formats: tuple[str, ...] = ("PPM",)
    else:
        formats = ("WEBP", "PNG")
    try:
        with Image.open(io.BytesIO(data), formats=formats) as raw:
            if raw.width * raw.height > max_pixels:
                raise FrameError("image too large")
            return raw.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise FrameError("frame does not decode") from exc
