"""Which labelled field has the keyboard focus, from the pixels (X11 says nothing of fields).

Toolkits without an accessibility role for password entries (Tk, Swing, SDL) still draw
the focus: a field that takes it gains ink (a focus ring, a caret), the field that loses it
loses ink. Between two kept frames of one window, the changed area that gained the most ink
is the newly focused field, and the OCR'd words just left of it on its line are its label
(a label above a field is not looked for: in a terminal that would be the previous prompt,
"Password:" above "Name:"). A label that names a secret (PIN, password, passcode...)
makes typing there a password run. The focused field is remembered per window, so typing
resumed in it later (mask characters appearing in it) keeps the verdict, and a click into
another field replaces it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from keystep.redact.layout import to_gray
from keystep.redact.ocr import Word
from keystep.redact.password_fields import is_echo_off_prompt, is_password_context

Image = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]  # x, y, w, h

CELL: Final = 4
CHANGED: Final = 24  # luma difference that counts as a changed pixel
INK: Final = 60  # luma distance from an area's background that counts as ink
MAX_CHANGED_SHARE: Final = 0.05
"""A frame that changed more than this share of its pixels is a new screen, not a focus
move: it says nothing about the focused field."""
MIN_FIELD_H: Final = 6
MAX_FIELD_SHARE: Final = 0.5  # a focused widget (a text area too) is under half the frame
LABEL_REACH: Final = 360  # how far left of a field its label may start, px
WINDOWS: Final = 8


@dataclass(frozen=True, slots=True)
class Focus:
    """The field that last took the focus in a window and the label next to it."""

    x: int
    y: int
    w: int
    h: int
    label: str

    @property
    def password(self) -> bool:
        return bool(self.label) and is_password_context(app=None, title=None, field=self.label)


class FocusTracker:
    """Per window: the previous frame and the field that has the focus. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: OrderedDict[str, Image] = OrderedDict()
        self._focus: dict[str, Focus] = {}

    def update(
        self,
        window_key: str,
        image: Image,
        words: Sequence[Word],
        read: Callable[[npt.NDArray[np.uint8]], list[Word]] | None = None,
    ) -> Focus | None:
        """Look at the next kept (redacted) frame of a window and its OCR'd words; the
        field focused now, when one is known. ``read`` OCRs a grayscale strip: the strip
        just left of a newly focused field is read on its own, since a label set close to
        its field's focus ring is one region with it, which OCR reads poorly."""
        gray = to_gray(image)
        with self._lock:
            previous = self._frames.pop(window_key, None)
            self._frames[window_key] = gray
            while len(self._frames) > WINDOWS:
                gone, _ = self._frames.popitem(last=False)
                self._focus.pop(gone, None)
            focus = self._focus.get(window_key)
        if previous is not None and previous.shape == gray.shape:
            box, lost = _gained_focus(previous, gray)
            if box is not None:
                label = _strip_label(gray, box, read) if read is not None else ""
                focus = Focus(*box, label=label or _label(box, words))
            elif focus is not None and any(_overlap(focus, b) for b in lost):
                focus = None  # the field lost its ring or caret: the focus went elsewhere
            with self._lock:
                if focus is None:
                    self._focus.pop(window_key, None)
                else:
                    self._focus[window_key] = focus
        return focus

    def forget(self, window_key: str) -> None:
        with self._lock:
            self._frames.pop(window_key, None)
            self._focus.pop(window_key, None)


def _overlap(focus: Focus, box: Box) -> bool:
    x, y, w, h = box
    return x < focus.x + focus.w and focus.x < x + w and y < focus.y + focus.h and focus.y < y + h


def _gained_focus(
    previous: npt.NDArray[np.uint8], current: npt.NDArray[np.uint8]
) -> tuple[Box | None, list[Box]]:
    """The box of the changed area that gained the most ink, if any gained ink; and the
    boxes of the changed areas that lost ink."""
    changed = np.abs(current.astype(np.int16) - previous.astype(np.int16)) > CHANGED
    count = int(np.count_nonzero(changed))
    if count == 0 or count > MAX_CHANGED_SHARE * changed.size:
        return None, []
    h, w = changed.shape
    ch, cw = h // CELL, w // CELL
    cells = np.asarray(
        changed[: ch * CELL, : cw * CELL].reshape(ch, CELL, cw, CELL).any(axis=(1, 3)), dtype=bool
    )
    best: tuple[int, Box] | None = None
    lost: list[Box] = []
    for cy0, cx0, cy1, cx1 in _components(cells):
        x0, y0 = cx0 * CELL, cy0 * CELL
        x1, y1 = min(w, cx1 * CELL), min(h, cy1 * CELL)
        if not MIN_FIELD_H <= y1 - y0 <= MAX_FIELD_SHARE * h or x1 - x0 > MAX_FIELD_SHARE * w:
            continue
        before, after = previous[y0:y1, x0:x1], current[y0:y1, x0:x1]
        background = int(np.bincount(before.ravel(), minlength=256).argmax())
        gain = int(np.count_nonzero(np.abs(after.astype(np.int16) - background) > INK)) - int(
            np.count_nonzero(np.abs(before.astype(np.int16) - background) > INK)
        )
        if gain > 0 and (best is None or gain > best[0]):
            best = (gain, (x0, y0, x1 - x0, y1 - y0))
        elif gain < 0:
            lost.append((x0, y0, x1 - x0, y1 - y0))
    return (None if best is None else best[1]), lost


def _components(cells: npt.NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (y0, x0, y1, x1, in cells) of groups of set cells at most one cell
    apart."""
    todo = set(zip(*(a.tolist() for a in np.nonzero(cells)), strict=True))
    boxes = []
    while todo:
        stack = [todo.pop()]
        y0 = y1 = stack[0][0]
        x0 = x1 = stack[0][1]
        while stack:
            y, x = stack.pop()
            y0, y1, x0, x1 = min(y0, y), max(y1, y), min(x0, x), max(x1, x)
            for dy in (-2, -1, 0, 1, 2):
                for dx in (-2, -1, 0, 1, 2):
                    near = (y + dy, x + dx)
                    if near in todo:
                        todo.remove(near)
                        stack.append(near)
        boxes.append((y0, x0, y1 + 1, x1 + 1))
    return boxes


def _strip_label(
    gray: npt.NDArray[np.uint8],
    box: tuple[int, int, int, int],
    read: Callable[[npt.NDArray[np.uint8]], list[Word]],
) -> str:
    """OCR of the strip left of the field, up to the field's edge."""
    x, y, _, h = box
    x0 = max(0, x - LABEL_REACH)
    if x - 1 - x0 < 8:
        return ""
    strip = gray[y : y + h, x0 : x - 1]
    try:
        words = read(np.ascontiguousarray(strip))
    except Exception:
        return ""  # past the deadline: the words of the frame remain
    return _label((x - 1 - x0, 0, 1, h), words)


def _label(box: tuple[int, int, int, int], words: Sequence[Word]) -> str:
    """The words just left of the field on its line. (Not a line above it: in a terminal
    that is the previous prompt, "Password:" above a "Name:" prompt.)"""
    x, y, _, h = box
    middle = y + h / 2
    left = sorted(
        (wd for wd in words if wd.y <= middle <= wd.y + wd.h and wd.x + wd.w <= x + 2),
        key=lambda wd: -(wd.x + wd.w),
    )
    phrase: list[Word] = []
    edge = x
    for wd in left:
        # The phrase nearest the field, up to a gap wider than a few spaces.
        if edge - (wd.x + wd.w) > (LABEL_REACH if not phrase else 3 * max(wd.h, 8)):
            break
        phrase.append(wd)
        edge = wd.x
    return " ".join(wd.text for wd in reversed(phrase))


def prompt_reads_secret(words: Sequence[Word], area: Box | None = None) -> bool:
    """Whether the last line of text in ``area`` (a terminal window) is a prompt that reads
    a secret ("[sudo] password for alex:"), as OCR read it from the screen. The screen's
    word for programs the line discipline cannot speak for: ssh puts the local terminal in
    raw mode, so a remote sudo's prompt has echo on as far as this machine can tell."""
    line = _last_line(words, area)
    if len(line) > 1:
        cell = sum(w.w for w in line[:-1]) / max(1, sum(len(w.text) for w in line[:-1]))
        if line[-1].w <= 1.5 * cell:
            line = line[:-1]  # one character cell after the prompt: the cursor block
    return bool(line) and is_echo_off_prompt(" ".join(w.text for w in line))


def _last_line(words: Sequence[Word], area: Box | None) -> list[Word]:
    if area is not None:
        ax, ay, aw, ah = area
        words = [
            w
            for w in words
            if w.x >= ax and w.y >= ay and w.x + w.w <= ax + aw and w.y + w.h <= ay + ah
        ]
    if not words:
        return []
    bottom = max(words, key=lambda w: w.y + w.h)
    middle = bottom.y + bottom.h / 2
    return sorted((w for w in words if w.y <= middle <= w.y + w.h), key=lambda w: w.x)
