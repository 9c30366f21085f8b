"""The frame codec: what the recorder writes opens again pixel for pixel; nothing else does."""

from __future__ import annotations

import io

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from keystep.model.frame_codec import CODEC, ZSTD_MAGIC, FrameError, encode_frame, open_frame

SCREEN = 1280 * 800


@settings(max_examples=40, deadline=None)
@given(
    w=st.integers(1, 64),
    h=st.integers(1, 64),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_frame_round_trips_exactly(w: int, h: int, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data = encode_frame(Image.fromarray(pixels, "RGB"))
    assert data[:4] == ZSTD_MAGIC and CODEC == "zstd-ppm"
    assert np.array_equal(np.asarray(open_frame(data, max_pixels=SCREEN)), pixels)


def test_earlier_codecs_still_open() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB")
    for fmt, opts in (("WEBP", {"lossless": True}), ("PNG", {})):
        buf = io.BytesIO()
        img.save(buf, fmt, **opts)
        assert np.array_equal(np.asarray(open_frame(buf.getvalue(), max_pixels=SCREEN)), pixels)


def _zstd(payload: bytes, *, size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(write_content_size=size).compress(payload)


@pytest.mark.parametrize(
    ("what", "data"),
    [
        ("empty", b""),
        ("garbage", b"not an image at all"),
        ("a JPEG (never a frame codec)", b"\xff\xd8\xff\xe0" + b"\0" * 64),
        ("zstd of text", _zstd(b"hello")),
        ("zstd without its content size", _zstd(b"P6\n1 1\n255\n\0\0\0", size=False)),
        ("a PPM claiming a huge screen", _zstd(b"P6\n100000 100000\n255\n" + b"\0" * 30)),
        ("a truncated zstd frame", encode_frame(Image.new("RGB", (50, 50)))[:-4]),
        ("a bomb: more than a screen", _zstd(b"P6\n4000 4000\n255\n" + bytes(3 * 4000 * 4000))),
    ],
)
def test_what_is_not_a_frame_is_refused(what: str, data: bytes) -> None:
    with pytest.raises(FrameError):
        open_frame(data, max_pixels=SCREEN)
