"""The focused field from the pixels: the area that gained a focus ring and its label."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from keystep.redact import Redactor
from keystep.redact.focus import FocusTracker, prompt_reads_secret
from keystep.redact.ocr import Word

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BG = (217, 217, 217)  # Tk's default background; an unfocused entry's ring has its colour
FIELDS = {"Employee": 60, "Amount": 110, "Approval PIN": 160}
FIELD_X, FIELD_W, FIELD_H = 200, 240, 28


def form(focused: str | None, typed: dict[str, str] | None = None) -> np.ndarray:
    """A Tk-like form: labels left of sunken entries; the focused one has a black ring and
    a caret."""
    image = Image.new("RGB", (800, 400), BG)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 13)
    for label, y in FIELDS.items():
        # Right-aligned a few pixels left of the field, as a grid of labels and entries.
        draw.text((FIELD_X - 4 - font.getlength(label), y + 6), label, font=font, fill=(0, 0, 0))
        draw.rectangle((FIELD_X, y, FIELD_X + FIELD_W, y + FIELD_H), fill=(255, 255, 255))
        draw.line((FIELD_X, y, FIELD_X + FIELD_W, y), fill=(130, 130, 130))
        text = (typed or {}).get(label, "")
        draw.text((FIELD_X + 6, y + 6), text, font=font, fill=(0, 0, 0))
        if label == focused:
            draw.rectangle(
                (FIELD_X - 1, y - 1, FIELD_X + FIELD_W + 1, y + FIELD_H + 1), outline=(0, 0, 0)
            )
            caret = FIELD_X + 7 + int(font.getlength(text))
            draw.line((caret, y + 5, caret, y + FIELD_H - 5), fill=(0, 0, 0))
    return np.asarray(image)


def label_words() -> list[Word]:
    """The labels' words as OCR would box them."""
    font = ImageFont.truetype(FONT, 13)
    words = []
    for label, y in FIELDS.items():
        x = FIELD_X - 4 - font.getlength(label)
        for part in label.split():
            words.append(Word(part, int(x), y + 8, int(font.getlength(part)), 12))
            x += font.getlength(part + " ")
    return words


def test_the_field_that_takes_the_focus_and_its_label() -> None:
    tracker = FocusTracker()
    words = label_words()
    assert tracker.update("w", form(None), words) is None  # nothing to compare with yet
    focus = tracker.update("w", form("Employee"), words)
    assert focus is not None and focus.label == "Employee" and not focus.password
    assert abs(focus.y - FIELDS["Employee"]) <= 4
    focus = tracker.update("w", form("Approval PIN"), words)
    assert focus is not None and focus.label == "Approval PIN" and focus.password
    # Typing in it keeps the verdict: the mask characters are ink gained in the same field.
    focus = tracker.update("w", form("Approval PIN", {"Approval PIN": "****"}), words)
    assert focus is not None and focus.password
    # Leaving the PIN field for another: the field that gained the ring decides.
    focus = tracker.update("w", form("Amount", {"Approval PIN": "****"}), words)
    assert focus is not None and focus.label == "Amount" and not focus.password
    # Back to the PIN, then away to something that shows no focus: the PIN field lost its
    # ring, so its verdict is gone.
    focus = tracker.update("w", form("Approval PIN", {"Approval PIN": "****"}), words)
    assert focus is not None and focus.password
    assert tracker.update("w", form(None, {"Approval PIN": "****"}), words) is None


def test_other_windows_and_new_screens_say_nothing() -> None:
    tracker = FocusTracker()
    words = label_words()
    tracker.update("a", form(None), words)
    assert tracker.update("b", form("Approval PIN"), words) is None  # another window
    # A whole new screen is not a focus move.
    tracker.update("c", form(None), words)
    other = np.asarray(Image.new("RGB", (800, 400), (20, 20, 20)))
    assert tracker.update("c", other, words) is None


def test_a_label_glued_to_the_focus_ring_is_read_on_its_own(redactor: Redactor) -> None:
    """The label ends a few pixels left of the field, so with the black ring the two are one
    text region: the strip left of the field is OCR'd by itself."""

    def frame(focused: str | None) -> np.ndarray:
        image = np.full((800, 1280, 3), 250, np.uint8)
        image[:400, :800] = form(focused)
        return image

    for focused in (None, "Approval PIN"):
        result = redactor.redact_frame_result(
            frame(focused), window_key="form", deadline=time.monotonic() + 30
        )
        assert result is not None
        focus = redactor.focused_field("form", result)
    assert focus is not None and "PIN" in focus.label and focus.password


def _line(y: int, *texts: str, x: int = 40, cell: int = 11) -> list[Word]:
    """Words of one terminal line in a monospace font of ``cell`` px per character."""
    words = []
    for text in texts:
        words.append(Word(text, x, y, cell * len(text), 16))
        x += cell * (len(text) + 1)
    return words


def test_a_terminal_whose_last_line_asks_for_a_secret() -> None:
    history = _line(60, "alex@build:~$", "ssh", "build2")
    sudo = _line(80, "[sudo]", "password", "for", "alex:")
    cursor = Word("ff", sudo[-1].x + sudo[-1].w + 11, 78, 12, 22)  # the cursor block
    assert prompt_reads_secret([*history, *sudo, cursor])
    assert prompt_reads_secret(history + _line(80, "Enter", "passphrase", "for", "key", "'x':"))
    # Not the last line: the secret was asked for before, the keys go to "Name:" now.
    assert not prompt_reads_secret(sudo + _line(100, "Name:"))
    assert not prompt_reads_secret(history + _line(80, "alex@build2:~$"))
    # Text after the prompt is not a cursor: the program echoes what is typed.
    assert not prompt_reads_secret(_line(80, "Password:", "hunter-visible"))
    # Only the terminal's own area counts (another window's line below it does not).
    other = _line(400, "Name:", x=700)
    assert prompt_reads_secret([*sudo, *other], area=(0, 0, 600, 300))
    assert not prompt_reads_secret([*sudo, *other])
    assert not prompt_reads_secret([])
