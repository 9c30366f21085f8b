"""Screens of bad input: tiny text, huge text, values cut by the frame's edge."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from keystep.redact import RedactionSettings, Redactor
from keystep.redact.corpus import BAD_SIZES, directory, screens
from keystep.redact.spans import PERSON

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _screen(
    lines: list[tuple[int, str]], *, size: int, font: str = SANS
) -> tuple[np.ndarray, ImageFont.FreeTypeFont]:
    image = Image.new("RGB", (1280, 800), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(font, size)
    for i, (x, text) in enumerate(lines):
        draw.text((x, 60 + i * int(size * 1.8)), text, font=face, fill=(20, 20, 20))
    return np.asarray(image), face


def _glyphs_filled(
    out: np.ndarray, face: ImageFont.FreeTypeFont, x: int, y: int, line: str, value: str
) -> bool:
    """Every inked pixel of ``value`` (as drawn in ``line`` at (x, y)) inside the frame is
    filled."""
    mask = Image.new("L", (1280 + 2000, 800), 0)
    start = x + face.getlength(line[: line.index(value)])
    ImageDraw.Draw(mask).text((start, y), value, font=face, fill=255)
    ink = np.asarray(mask)[:, :1280] > 0
    return bool(np.all(out[ink] == 0))


def _redact(redactor: Redactor, image: np.ndarray, key: str) -> np.ndarray:
    out = redactor.redact_frame(image, window_key=key, deadline=time.monotonic() + 60)
    assert out is not None
    return out[0]


def test_a_value_cut_by_the_frame_edge_is_filled(redactor: Redactor) -> None:
    # At 40 px the address runs past the right edge: what is left has no "@".
    size = 40
    line = "You can reach me at rcarter@example.com"
    face = ImageFont.truetype(FONT, size)
    x = 1280 - int(face.getlength("You can reach me at rcar"))
    card = "Card 4845 1352 6273 8284"
    x_card = 1280 - int(face.getlength("Card 4845 1352 62"))
    image, face = _screen(
        [(x, line), (60, "Quarterly review"), (x_card, card)], size=size, font=FONT
    )
    out = _redact(redactor, image, "cut")
    assert _glyphs_filled(out, face, x, 60, line, "rcarter@example.com")
    # Too few digits are left to read as a card; the groups before the edge go too.
    assert _glyphs_filled(out, face, x_card, 60 + 2 * int(size * 1.8), card, "4845 1352 6273")
    # Text clear of the edge is kept.
    y = 60 + int(size * 1.8)
    assert not np.all(out[y : y + size, 60:400] == 0, axis=2).any()


TINY_FONTS = (
    "dejavu/DejaVuSerif.ttf",
    "dejavu/DejaVuSans.ttf",
    "liberation/LiberationSans-Regular.ttf",
    "noto/NotoSansMono-Regular.ttf",
    "dejavu/DejaVuSansMono.ttf",
)
# Lines that leaked at 8-9 px before small lines were read at twice the height and unsure
# words of small text filled: "@" read as "g", "Michael" as "Michad".
TINY_LINES = (
    ("Email: heatherford@example.org", "heatherford@example.org"),
    (
        "hey, can you send the invoice to nferguson@example.net before lunch?",
        "nferguson@example.net",
    ),
    ("my cell is (409)660-2042, call me when you land", "(409)660-2042"),
    ("Michael Lewis said the deploy is done", "Michael Lewis"),
    (
        "You can reach me at (481)778-6173 or jonathanroman@example.net.",
        "jonathanroman@example.net",
    ),
)


@pytest.fixture(scope="module")
def tiny_redactor() -> Iterator[Redactor]:
    settings = RedactionSettings(names=("Michael Lewis", "Priya Raman"))
    with Redactor(settings, episode_salt=b"episode-1") as r:
        yield r


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("font", TINY_FONTS)
def test_tiny_text_is_read_or_filled(tiny_redactor: Redactor, font: str, size: int) -> None:
    path = f"/usr/share/fonts/truetype/{font}"
    image, face = _screen([(230, line) for line, _ in TINY_LINES], size=size, font=path)
    out = _redact(tiny_redactor, image, f"{font}-{size}")
    step = int(size * 1.8)
    leaked = [
        value
        for i, (line, value) in enumerate(TINY_LINES)
        if not _glyphs_filled(out, face, 230, 60 + i * step, line, value)
    ]
    assert not leaked
    # Plain prose at that size is kept ("said the deploy is done").
    y = 60 + 3 * step
    assert not np.all(out[y : y + size, 400:560] == 0, axis=2).all()


@pytest.mark.slow
def test_bad_screens_leak_nothing_within_bounded_time() -> None:
    """The harness's bad-input screens (8, 9, 40 and 56 px) on a seed no rule was tuned on."""
    from keystep.redact import evaluate

    report = evaluate.run(cases=0, screen_count=0, seed=91, bad_screens=8)
    assert report.bad is not None
    summary = report.bad.bad_summary()
    print(summary)
    assert not any(summary["leaks"].values()), summary
    assert sum(summary["planted"].values()) > 20
    assert summary["frame_ms_max"] < 10_000


def test_bad_screens_plant_names_from_the_redactors_directory() -> None:
    names = directory(5)
    planted = [
        p.value
        for s in screens(12, seed=6, sizes=BAD_SIZES, names=names)
        for p in s.planted
        if p.entity == PERSON
    ]
    assert planted and set(planted) <= set(names)
