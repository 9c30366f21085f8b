"""The OCR engine contract, run against every engine implementation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from keystep.redact.ocr import OcrEngine, OcrPool, OcrTimeout, TesseractEngine, prepare

ENGINES: list[Callable[[], OcrEngine]] = [TesseractEngine]
FONT = "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"


def line(text: str, *, size: int = 16, dark: bool = False) -> np.ndarray:
    font = ImageFont.truetype(FONT, size)
    width = int(font.getlength(text)) + 12
    image = Image.new("L", (width, size + 10), 30 if dark else 250)
    ImageDraw.Draw(image).text((6, 3), text, font=font, fill=230 if dark else 20)
    return np.asarray(image)


@pytest.fixture(params=ENGINES, ids=lambda make: make.__name__)
def engine(request: pytest.FixtureRequest) -> Iterator[OcrEngine]:
    made = request.param()
    yield made
    made.close()


@pytest.mark.parametrize("dark", [False, True])
@pytest.mark.parametrize("size", [11, 16, 40])
def test_reads_words_with_their_boxes(engine: OcrEngine, dark: bool, size: int) -> None:
    image = line("Contact jane.doe@example.com today", size=size, dark=dark)
    words = engine.read_words(image, deadline=time.monotonic() + 30)
    # Small text may gain a stray quote mark at a word's edge; the words must be there.
    assert [w.text.strip("‘’'\"`") for w in words] == ["Contact", "jane.doe@example.com", "today"]
    height, width = image.shape
    for w in words:
        assert 0 <= w.x < w.x + w.w <= width + 1 and 0 <= w.y < w.y + w.h <= height + 1
    assert words[0].x < words[1].x < words[2].x


def test_blank_image_has_no_words(engine: OcrEngine) -> None:
    assert (
        engine.read_words(np.full((30, 200), 255, np.uint8), deadline=time.monotonic() + 30) == []
    )


def test_a_deadline_in_the_past_times_out(engine: OcrEngine) -> None:
    with pytest.raises(OcrTimeout):
        engine.read_words(line("too late"), deadline=time.monotonic() - 1)


def test_prepare_inverts_dark_themes_and_scales_small_text() -> None:
    image, scale = prepare(line("abc", size=9, dark=True))
    assert scale > 1 and int(np.median(image)) > 128


def test_the_pool_runs_jobs_and_fails_late_ones() -> None:
    pool = OcrPool(TesseractEngine, 2)
    try:
        ok = pool.submit(line("hello world"), deadline=time.monotonic() + 30)
        late = pool.submit(line("hello world"), deadline=time.monotonic() - 1)
        assert [w.text for w in ok.result(timeout=30)] == ["hello", "world"]
        with pytest.raises(OcrTimeout):
            late.result(timeout=30)
    finally:
        pool.close()


def test_a_pool_whose_engine_cannot_start_says_so() -> None:
    def broken() -> OcrEngine:
        return TesseractEngine(tessdata="/nonexistent/")

    with pytest.raises(RuntimeError):
        OcrPool(broken, 1)
