"""Screen redaction: black out excluded windows, OCR text, fill every flagged word box."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import xxhash

from keystep.redact.layout import Region, find_text_regions, to_gray
from keystep.redact.ocr import OcrPool, Word
from keystep.redact.spans import (
    EMAIL,
    IBAN,
    NUMBER,
    PASSWORD,
    SECRET,
    Span,
    TextDetector,
    run_detectors,
)

Image = npt.NDArray[np.uint8]

FILL: Final = (0, 0, 0)
"""Solid black: a fill hides what it covers completely, which a blur does not."""
MARGIN: Final = 3
MIN_REGION_WIDTH: Final = 6
CACHE_WINDOWS: Final = 16
CACHE_ENTRIES: Final = 4096
DETECT_CACHE: Final = 8192
_RANDOM_LOOKING: Final = frozenset({SECRET, PASSWORD, EMAIL, IBAN, NUMBER})
_EMAIL_PART: Final = re.compile(r"^[\"'“‘(<]|[0-9._\-]")
TINY_HEIGHT: Final = 11
"""Regions with less ink height than this (fonts under ~9 px) are below what OCR reads
reliably: unless they read as plain words, they are filled whole."""
ILLEGIBLE: Final = "SMALL_TEXT"
CUT_OFF: Final = "CUT_OFF"
"""A token cut by the frame's left or right edge: what is left of it may not say what it
is (an address without its "@", a card without most digits), so it is filled."""
EDGE_GAP: Final = 0.3
"""Ink this close to the frame's edge (times the line height, under a word space) runs on
past it."""
_PLAIN_WORD: Final = re.compile(r"^[(\"'‘“]?[A-Za-z][a-z]*[.,;:!?)\"'’”]*$")
SMALL_HEIGHT: Final = 12
"""Regions with at most this much ink height (8-9 px fonts, and 11 px text without
descenders) are read at the edge of OCR's ability: a word there that OCR is unsure of is
filled unless it reads as a plain word OCR is fairly sure of."""
UNSURE: Final = 80.0
DOUBTFUL: Final = 60.0
SMALL_ADVANCE: Final = 5.6
"""Pixels per character below which a line's font is under ~9 px (a monospace 9 px font
advances 5.4 px; 11 px fonts 5.8-7), which tells 8-9 px text from 11 px text of the same
ink height."""


@dataclass(frozen=True, slots=True)
class Box:
    """A filled rectangle and the entity that made us fill it."""

    x: int
    y: int
    w: int
    h: int
    entity: str


@dataclass(frozen=True)
class FrameResult:
    image: Image
    boxes: list[Box]
    regions: int
    recognised: int  # regions that went through OCR (the rest came from the cache)
    words: tuple[Word, ...] = ()  # every word OCR read, in frame coordinates


@dataclass(frozen=True, slots=True)
class _Layout:
    rows: npt.NDArray[np.uint64]  # a hash of every pixel row of the frame
    regions: list[Region]


@dataclass(frozen=True, slots=True)
class _Placed:
    word: Word  # in frame coordinates
    region: int


class ScreenRedactor:
    """Redacts whole frames. Safe to call from several threads at once."""

    def __init__(self, detectors: Sequence[TextDetector], pool: OcrPool) -> None:
        self._detectors = tuple(detectors)
        self._pool = pool
        self._lock = threading.Lock()
        # Per window: OCR results of region crops keyed by a hash of their pixels. A region
        # whose pixels did not change since an earlier frame of the window is not OCR'd
        # again, wherever it moved to (scrolling).
        self._ocr_cache: OrderedDict[str, OrderedDict[bytes, list[Word]]] = OrderedDict()
        self._detect_cache: OrderedDict[str, list[Span]] = OrderedDict()
        self._layouts: OrderedDict[str, _Layout] = OrderedDict()

    def redact(
        self,
        image: Image,
        *,
        window_key: str,
        blackout: Sequence[tuple[int, int, int, int]] = (),
        deadline: float,
        ocr: bool = True,
    ) -> FrameResult | None:
        first = blackout_only(image, blackout)
        out = first.image
        height, width = out.shape[:2]
        if not ocr:
            return first
        rows = _row_hashes(out)
        regions = self._layout(out, rows, window_key)
        read = self._read(out, regions, window_key, deadline)
        if read is None:
            return None
        words, recognised = read
        boxes = [_clip(b, width, height) for b in self._flag(out, regions, words)]
        boxes = [b for b in boxes if b.w and b.h]
        for box in boxes:
            out[box.y : box.y + box.h, box.x : box.x + box.w] = FILL
        with self._lock:
            self._layouts[window_key] = _Layout(rows, regions)
            self._layouts.move_to_end(window_key)
            if len(self._layouts) > CACHE_WINDOWS:
                self._layouts.popitem(last=False)
        placed = tuple(p.word for region in words for p in region)
        return FrameResult(out, first.boxes + boxes, len(regions), recognised, placed)

    def _layout(self, frame: Image, rows: npt.NDArray[np.uint64], window_key: str) -> list[Region]:
        """Text regions of ``frame``: laid out again only in the bands of rows that changed
        since the previous kept frame of this window; elsewhere the previous regions stand."""
        with self._lock:
            previous = self._layouts.get(window_key)
        if previous is not None and previous.rows.shape == rows.shape:
            changed = np.flatnonzero(previous.rows != rows)
            if changed.size == 0:
                return previous.regions
            if changed.size <= rows.size // 2:
                regions = _relayout(frame, previous.regions, changed)
                if regions is not None:
                    return regions
        return [r for r in find_text_regions(to_gray(frame)) if r.w >= MIN_REGION_WIDTH]

    def forget(self, window_key: str) -> None:
        with self._lock:
            self._ocr_cache.pop(window_key, None)
            self._layouts.pop(window_key, None)

    def _read(
        self, frame: Image, regions: list[Region], window_key: str, deadline: float
    ) -> tuple[list[list[_Placed]], int] | None:
        """Words of every region in frame coordinates and how many regions needed OCR,
        or None past the deadline."""
        height, width = frame.shape[:2]
        crops = []
        for r in regions:
            x0, y0 = max(0, r.x - MARGIN), max(0, r.y - MARGIN)
            x1, y1 = min(width, r.x + r.w + MARGIN), min(height, r.y + r.h + MARGIN)
            crop = frame[y0:y1, x0:x1]
            key = xxhash.xxh3_128_digest(crop.tobytes()) + crop.shape[1].to_bytes(4, "little")
            crops.append((x0, y0, crop, key))
        with self._lock:
            cache = self._ocr_cache.get(window_key)
            if cache is None:
                cache = self._ocr_cache[window_key] = OrderedDict()
                if len(self._ocr_cache) > CACHE_WINDOWS:
                    self._ocr_cache.popitem(last=False)
            else:
                self._ocr_cache.move_to_end(window_key)
            known = [cache.get(key) for _, _, _, key in crops]
        pending: dict[int, Future[list[Word]]] = {}
        # Longest lines first, so the pool's workers finish together (LPT scheduling).
        todo = sorted(
            (i for i in range(len(crops)) if known[i] is None),
            key=lambda i: -crops[i][2].shape[1] / max(1, crops[i][2].shape[0]),
        )
        for i in todo:
            pending[i] = self._pool.submit(to_gray(crops[i][2]), deadline=deadline)
        try:
            for i, future in pending.items():
                known[i] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except (FutureTimeout, Exception):
            for future in pending.values():
                future.cancel()
            return None
        with self._lock:
            for i in pending:
                cache[crops[i][3]] = known[i] or []
            while len(cache) > CACHE_ENTRIES:
                cache.popitem(last=False)
        placed: list[list[_Placed]] = []
        for i, (x0, y0, _, _) in enumerate(crops):
            placed.append(
                [
                    _Placed(Word(w.text, w.x + x0, w.y + y0, w.w, w.h, w.conf), i)
                    for w in known[i] or []
                ]
            )
        return placed, len(pending)

    def _spans(self, text: str) -> list[Span]:
        with self._lock:
            cached = self._detect_cache.get(text)
            if cached is not None:
                self._detect_cache.move_to_end(text)
                return cached
        spans = run_detectors(self._detectors, text)
        with self._lock:
            self._detect_cache[text] = spans
            if len(self._detect_cache) > DETECT_CACHE:
                self._detect_cache.popitem(last=False)
        return spans

    def _flag(self, frame: Image, regions: list[Region], words: list[list[_Placed]]) -> list[Box]:
        boxes: list[Box] = []
        for index, region in enumerate(regions):
            texts = [p.word.text for p in words[index]]
            if region.h < TINY_HEIGHT and not (texts and all(map(_PLAIN_WORD.match, texts))):
                boxes.append(Box(region.x - 2, region.y - 2, region.w + 4, region.h + 4, ILLEGIBLE))
            elif region.h <= SMALL_HEIGHT and _narrow(region, texts):
                unsure = [i for i, p in enumerate(words[index]) if _unsure(p.word)]
                # One fill per run of consecutive unsure words.
                runs: list[list[int]] = []
                for i in unsure:
                    if runs and runs[-1][-1] == i - 1:
                        runs[-1].append(i)
                    else:
                        runs.append([i])
                for run in runs:
                    # Grown over the rest of a token OCR split ("mendozagabriel" and
                    # "leGexample.org.") as if it were an address.
                    run = _glued(run, words[index], regions, EMAIL)
                    boxes.extend(_cover(run, words[index], regions, ILLEGIBLE, frame))
        for row in _rows(regions):
            cut_sides = _cut_edges(frame, regions, words, row)
            if cut_sides:
                # A glyph cut by the edge may leave only a sliver of ink (the bar of a
                # "7"): its fill takes the height of the row's text.
                inked = [i for i in row if words[i]] + list(cut_sides)
                top = min(regions[i].y for i in inked)
                bottom = max(regions[i].y + regions[i].h for i in inked)
                for index, sides in cut_sides.items():
                    boxes.extend(_cut_off(frame, regions[index], words[index], top, bottom, sides))
            parts: list[str] = []
            offsets: list[tuple[int, int, _Placed]] = []
            cursor = 0
            previous: Region | None = None
            for index in row:
                region = regions[index]
                if previous is not None:
                    gap = region.x - (previous.x + previous.w)
                    # Close regions are one phrase; far ones are separate fields.
                    sep = " " if gap < 1.2 * max(region.h, previous.h) else "    "
                    parts.append(sep)
                    cursor += len(sep)
                last: Word | None = None
                for placed in words[index]:
                    if last is not None:
                        # Tesseract splits tokens at tight kerning ("glpat -OgW"); a gap
                        # much narrower than a space is no space at all.
                        # Only next to punctuation ("example. org", "glpat -OgW"): two
                        # words whose boxes overlap are still two words.
                        gap = placed.word.x - (last.x + last.w)
                        glued = 0 <= gap < 0.12 * region.h and not (
                            last.text[-1:].isalnum() and placed.word.text[:1].isalnum()
                        )
                        if not glued:
                            parts.append(" ")
                            cursor += 1
                    parts.append(placed.word.text)
                    offsets.append((cursor, cursor + len(placed.word.text), placed))
                    cursor += len(placed.word.text)
                    last = placed.word
                # The gap to the next region counts from the furthest ink so far: the dot
                # of an "i" is a region of its own that ends before its stem.
                if previous is None or region.x + region.w >= previous.x + previous.w:
                    previous = region
            text = "".join(parts)
            if not text.strip():
                continue
            placed_row = [p for _, _, p in offsets]
            cut = _cut_run(placed_row, regions, cut_sides)
            boxes.extend(_cover(cut, placed_row, regions, CUT_OFF, frame))
            for span in self._spans(text):
                hit = [i for i, (s, e, _) in enumerate(offsets) if s < span.end and e > span.start]
                hit = _glued(hit, placed_row, regions, span.entity)
                boxes.extend(_cover(hit, placed_row, regions, span.entity, frame))
        return boxes


def _row_hashes(frame: Image) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each pixel row (about 1 ms for 1280x800)."""
    data = np.ascontiguousarray(frame)
    return np.fromiter(
        (xxhash.xxh3_64_intdigest(row.tobytes()) for row in data.reshape(data.shape[0], -1)),
        dtype=np.uint64,
        count=data.shape[0],
    )


def _relayout(
    frame: Image, previous: list[Region], changed: npt.NDArray[np.intp]
) -> list[Region] | None:
    """Previous regions clear of the changed rows, plus a fresh layout of the bands of
    changed rows; None when a band's ink runs past its edge (then lay out everything)."""
    height = frame.shape[0]
    breaks = np.flatnonzero(np.diff(changed) > 8)
    bands = [
        [int(a), int(b) + 1]
        for a, b in zip(
            np.concatenate(([changed[0]], changed[breaks + 1])),
            np.concatenate((changed[breaks], [changed[-1]])),
            strict=True,
        )
    ]
    # A few unchanged rows of margin, then grow every band over each previous region it
    # touches (until nothing changes): a band never cuts a region that stays.
    merged = [[max(0, a - 3), min(height, b + 3)] for a, b in bands]
    while True:
        grown = sorted(
            [
                min([a, *(r.y for r in previous if r.y < b and r.y + r.h > a)]),
                max([b, *(r.y + r.h for r in previous if r.y < b and r.y + r.h > a)]),
            ]
            for a, b in merged
        )
        joined: list[list[int]] = []
        for a, b in grown:
            if joined and a <= joined[-1][1]:
                joined[-1][1] = max(joined[-1][1], b)
            else:
                joined.append([a, b])
        if joined == merged:
            break
        merged = joined
    kept = [r for r in previous if all(r.y + r.h <= a or r.y >= b for a, b in merged)]
    for a, b in merged:
        for r in find_text_regions(to_gray(frame[a:b])):
            # Ink running on across the band's edge: the band cut a line in two.
            if (r.y == 0 and a > 0 and _ink_in_row(frame, a - 1, r)) or (
                r.y + r.h == b - a and b < height and _ink_in_row(frame, b, r)
            ):
                return None
            if r.w >= MIN_REGION_WIDTH:
                kept.append(Region(r.x, r.y + a, r.w, r.h))
    kept.sort(key=lambda r: (r.y, r.x))
    return kept


def _ink_in_row(frame: Image, y: int, region: Region) -> bool:
    row = to_gray(frame[y : y + 1, region.x : region.x + region.w]).astype(np.int16)
    return bool((np.abs(row - int(np.median(row))) > 36).any())


def blackout_only(image: Image, blackout: Sequence[tuple[int, int, int, int]]) -> FrameResult:
    """A copy of ``image`` with the excluded windows' rectangles filled."""
    if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
        raise ValueError("frame must be an HxWx3 uint8 RGB array")
    out = np.array(image[:, :, :3], copy=True)
    height, width = out.shape[:2]
    boxes = []
    for x, y, w, h in blackout:
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(width, int(x) + int(w)), min(height, int(y) + int(h))
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = FILL
            boxes.append(Box(x0, y0, x1 - x0, y1 - y0, "EXCLUDED_WINDOW"))
    return FrameResult(out, boxes, 0, 0)


def _rows(regions: list[Region]) -> list[list[int]]:
    """Regions grouped into visual text rows (vertical overlap), each sorted left to right."""
    rows: list[tuple[int, int, list[int]]] = []
    for i in sorted(range(len(regions)), key=lambda k: (regions[k].y, regions[k].x)):
        r = regions[i]
        for k, (top, bottom, members) in enumerate(rows):
            overlap = min(bottom, r.y + r.h) - max(top, r.y)
            if overlap >= 0.5 * min(r.h, bottom - top):
                members.append(i)
                rows[k] = (min(top, r.y), max(bottom, r.y + r.h), members)
                break
        else:
            rows.append((r.y, r.y + r.h, [i]))
    return [sorted(members, key=lambda k: regions[k].x) for _, _, members in rows]


def _narrow(region: Region, texts: list[str]) -> bool:
    chars = sum(map(len, texts)) + max(0, len(texts) - 1)
    return chars > 0 and region.w / chars < SMALL_ADVANCE


def _unsure(word: Word) -> bool:
    """A word of small text that OCR may have misread into something harmless-looking
    ("nfergquzonGexample.net", "(409}660-2042")."""
    if word.conf < DOUBTFUL:
        return True
    return word.conf < UNSURE and not _PLAIN_WORD.match(word.text)


def _randomish(word: str) -> bool:
    if not any(ch.isalnum() for ch in word):
        return True  # a stray "." or "-" between two fragments
    core = word.strip(".,;:!?\"'()[]|")
    if len(core) < 2 or (core[0].isupper() and core[1:].islower()) or core.islower():
        return False
    classes = (
        any(c.islower() for c in core)
        + any(c.isupper() for c in core)
        + any(c.isdigit() for c in core)
    )
    return classes >= 2 or (len(core) >= 4 and not core.isalpha())


def _glued(hit: list[int], row: list[_Placed], regions: list[Region], entity: str) -> list[int]:
    """Flagged words grown over neighbours that touch them on screen: OCR puts spaces
    inside tokens ("glpat -OgW...", "example. org") where the pixels have none. Random
    strings (keys, passwords) are grown over gaps up to a monospace space."""
    wide = entity in _RANDOM_LOOKING
    limit = 0.5 if wide else 0.3
    chosen = set(hit)
    for direction in (-1, 1):
        for start in hit:
            i = start
            while 0 <= i + direction < len(row):
                a, b = (
                    (row[i], row[i + direction]) if direction == 1 else (row[i + direction], row[i])
                )
                gap = b.word.x - (a.word.x + a.word.w)
                h = min(regions[a.region].h, regions[b.region].h)
                if a.region != b.region and not wide:
                    break
                nxt = row[i + direction].word.text
                # OCR shreds a long random string into fragments at odd gaps; they stay
                # random-looking ("xN", "DQyliwg!"), unlike the words around a key.
                # An address's local part split off at a quote or a digit ("“sheilal 1@ex").
                local = entity == EMAIL and direction == -1 and _EMAIL_PART.search(nxt)
                if gap > limit * h and not (wide and gap <= h and (_randomish(nxt) or local)):
                    break
                i += direction
                chosen.add(i)
    return sorted(chosen)


def _ink_columns(frame: Image, region: Region) -> npt.NDArray[np.bool_]:
    """Which columns of ``region`` hold ink (pixels far from the region's background)."""
    gray = to_gray(frame[region.y : region.y + region.h, region.x : region.x + region.w])
    background = int(np.bincount(gray.ravel(), minlength=256).argmax())
    far = np.abs(gray.astype(np.int16) - background) > 40
    return np.asarray(far.any(axis=0), dtype=bool)


def _snap(ink: npt.NDArray[np.bool_], start: int, step: int, min_gap: int) -> int:
    """From column ``start``, walk in direction ``step`` to the first run of ``min_gap``
    empty columns (a real space between words); the column where that run begins."""
    i = min(max(start, 0), len(ink) - 1)
    empty = 0
    while 0 <= i < len(ink):
        empty = empty + 1 if not ink[i] else 0
        if empty >= min_gap:
            return i - step * (min_gap - 1)
        i += step
    return -1 if step < 0 else len(ink)


def _cover(
    hit: list[int], row: list[_Placed], regions: list[Region], entity: str, frame: Image
) -> list[Box]:
    """Fill rectangles for flagged words: consecutive words of one region become one
    rectangle the full height of the region's ink, reaching over the gaps to the
    neighbouring words and out to the real space around the token in the pixels:
    Tesseract's word boxes can be off by a whole glyph at small sizes."""
    boxes = []
    by_region: dict[int, list[int]] = {}
    for i in hit:
        by_region.setdefault(row[i].region, []).append(i)
    for index, members in by_region.items():
        region = regions[index]
        first, last = min(members), max(members)
        pad = max(4, round(0.35 * region.h))
        left = row[first].word.x - pad
        right = row[last].word.x + row[last].word.w + pad
        if first > 0 and row[first - 1].region == index:
            before = row[first - 1].word
            left = min(left, before.x + before.w + 1)
        else:
            left = min(left, region.x - 2)
        if last + 1 < len(row) and row[last + 1].region == index:
            # Into the next word's box a little: kerned glyphs overlap it ("Y@").
            right = max(right, row[last + 1].word.x + pad // 2)
        else:
            right = max(right, region.x + region.w + 2)
        ink = _ink_columns(frame, region)
        min_gap = max(2, round(0.18 * region.h))
        left = min(left, region.x + _snap(ink, row[first].word.x - region.x, -1, min_gap))
        end = row[last].word.x + row[last].word.w - 1 - region.x
        right = max(right, region.x + _snap(ink, end, 1, min_gap) + 1)
        # Underscores and low punctuation sit apart below the line, in a sliver of ink the
        # layout drops as too thin; reach them.
        vpad = max(2, round(0.3 * region.h))
        boxes.append(Box(left, region.y - vpad, right - left, region.h + 2 * vpad, entity))
    return boxes


def _cut_off(
    frame: Image,
    region: Region,
    words: list[_Placed],
    top: int,
    bottom: int,
    sides: tuple[bool, bool],
) -> list[Box]:
    """Fills for the token a region's ink carries over the frame's right or left edge
    (``sides``), from ``top`` to ``bottom`` (its row's text's extent)."""
    width = frame.shape[1]
    line = bottom - top
    vpad = max(2, round(0.3 * line))
    y, h = top - vpad, line + 2 * vpad
    boxes = []
    ink: npt.NDArray[np.bool_] | None = None
    min_gap = max(2, round(0.18 * region.h))
    if sides[0]:
        # From the real space before the last word (or the region's start) to the edge.
        start = region.x
        if words:
            ink = _ink_columns(frame, region)
            last = max(words, key=lambda p: p.word.x + p.word.w).word
            start = region.x + max(0, _snap(ink, last.x - region.x, -1, min_gap))
        boxes.append(Box(start - 2, y, width - start + 2, h, CUT_OFF))
    if sides[1]:
        end = region.x + region.w
        if words:
            ink = _ink_columns(frame, region) if ink is None else ink
            first = min(words, key=lambda p: p.word.x).word
            end = region.x + min(region.w, _snap(ink, first.x + first.w - 1 - region.x, 1, min_gap))
        boxes.append(Box(0, y, end + 2, h, CUT_OFF))
    return boxes


def _digitish(text: str) -> bool:
    return any(ch.isdigit() for ch in text) or _randomish(text)


def _cut_edges(
    frame: Image, regions: list[Region], words: list[list[_Placed]], row: list[int]
) -> dict[int, tuple[bool, bool]]:
    """The regions of a row (left to right) that are text the frame's left or right edge
    cuts: ink OCR read as words, or a sliver of a glyph next to the row's words. Not a
    panel, a window border or a filled box that merely touches the edge. For each, whether
    the right and the left edge cut it."""
    width = frame.shape[1]
    text = [i for i in row if words[i]]
    if not text:
        return {}
    line = max(regions[i].h for i in text)
    near = max(2, round(EDGE_GAP * line))
    cut = {}
    for index in row:
        r = regions[index]
        right = r.x + r.w > width - near and _drawn(frame, r, slice(width - near, width))
        left = r.x < near and _drawn(frame, r, slice(0, near))
        if not (right or left):
            continue
        if not words[index]:
            if r.h > 1.3 * line:
                continue
            gap = min(
                max(regions[i].x - (r.x + r.w), r.x - (regions[i].x + regions[i].w)) for i in text
            )
            if gap > 1.2 * line:  # further than a (monospace) word space from the text
                continue
        cut[index] = (right, left)
    return cut


def _drawn(frame: Image, region: Region, columns: slice) -> bool:
    """Whether ``region`` has ink in ``columns`` that is not all solid fill (an excluded
    window's rectangle): text has anti-aliased edges even when drawn in pure black."""
    rows = frame[region.y : region.y + region.h]
    gray = to_gray(rows[:, region.x : region.x + region.w])
    background = int(np.bincount(gray.ravel(), minlength=256).argmax())
    strip = rows[:, columns]
    ink = np.abs(to_gray(strip).astype(np.int16) - background) > 40
    return bool(np.any(ink & np.any(strip != FILL, axis=2)))


def _cut_run(
    row: list[_Placed], regions: list[Region], cut: dict[int, tuple[bool, bool]]
) -> list[int]:
    """The words next to a frame edge that cuts the row (``cut``: regions and whether the
    right and the left edge cut them) that may be fragments of the cut value: the groups
    of a card or an IBAN ("4845 1352 6…") read as too few digits to be recognised."""
    run: list[int] = []
    if not row or not cut:
        return run
    right = any(sides[0] for sides in cut.values())
    left = any(sides[1] for sides in cut.values())
    for step, start, edge in ((-1, len(row) - 1, right), (1, 0, left)):
        i = start
        while edge and _digitish(row[i].word.text):
            run.append(i)
            j = i + step
            if not 0 <= j < len(row):
                break
            a, b = (row[j].word, row[i].word) if step < 0 else (row[i].word, row[j].word)
            if b.x - (a.x + a.w) > 0.8 * regions[row[i].region].h:
                break
            i = j
    return sorted(set(run))


def _clip(box: Box, width: int, height: int) -> Box:
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(width, box.x + box.w), min(height, box.y + box.h)
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0), box.entity)
