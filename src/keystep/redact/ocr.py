"""OCR engines (Tesseract through its C API, in memory) and a bounded pool of them."""

from __future__ import annotations

import os

# Tesseract's OpenMP threads would fight our worker pool for the cores; must be set
# before libtesseract loads.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import tesserocr
from PIL import Image

TESSDATA: Final = "/usr/share/tesseract-ocr/5/tessdata/"
# LSTM recognition is most accurate around this line height; smaller text is upscaled.
TARGET_HEIGHT: Final = 20
MAX_HEIGHT: Final = 96
# Lines of tiny text (8-9 px fonts: under 12 px of ink, 18 with the crop's margins) read
# far better at twice the usual height: "@" stays "@" rather than "g" or "e", ".com" does
# not become "con", names keep their letters. Bicubic keeps the thin strokes crisp.
TINY_LINE: Final = 18
TINY_TARGET: Final = 36


@dataclass(frozen=True, slots=True)
class Word:
    """A recognised word and its box, in the pixel coordinates of the image given."""

    text: str
    x: int
    y: int
    w: int
    h: int
    conf: float = 100.0  # the engine's confidence in the reading, 0-100


class OcrTimeout(Exception):
    """Recognition did not finish before its deadline."""


class OcrEngine(ABC):
    """Reads the words of one line-sized grayscale image. One instance per thread."""

    @abstractmethod
    def read_words(self, gray: npt.NDArray[np.uint8], *, deadline: float) -> list[Word]: ...

    @abstractmethod
    def close(self) -> None:
        """Release native resources."""


def prepare(gray: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], float]:
    """Dark text on a light background at a height Tesseract reads well; and the scale."""
    h = gray.shape[0]
    border = np.concatenate((gray[0], gray[-1], gray[:, 0], gray[:, -1]))
    if int(np.median(border)) < 128:
        # Dark theme. Inverting here is cheaper than Tesseract's retry-inverted pass.
        gray = 255 - gray
    scale = 1.0
    resample = Image.Resampling.BILINEAR
    if h <= TINY_LINE:
        scale = min(6.0, TINY_TARGET / h)
        resample = Image.Resampling.BICUBIC
    elif h < TARGET_HEIGHT:
        scale = min(4.0, TARGET_HEIGHT / h)
    elif h > MAX_HEIGHT and h <= 2 * MAX_HEIGHT:
        # One line of huge text; taller regions are several lines and stay as they are.
        scale = MAX_HEIGHT / h
    if scale != 1.0:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(h * scale)))
        gray = np.asarray(Image.fromarray(gray).resize(size, resample))
    return np.ascontiguousarray(gray), scale


class TesseractEngine(OcrEngine):
    """libtesseract through tesserocr: images go in as bytes, nothing touches disk."""

    def __init__(self, *, tessdata: str = TESSDATA, lang: str = "eng") -> None:
        self._api = tesserocr.PyTessBaseAPI(
            path=tessdata, lang=lang, psm=tesserocr.PSM.SINGLE_BLOCK, oem=tesserocr.OEM.LSTM_ONLY
        )
        self._api.SetVariable("tessedit_do_invert", "0")
        self._api.SetVariable("debug_file", "/dev/null")

    def read_words(self, gray: npt.NDArray[np.uint8], *, deadline: float) -> list[Word]:
        image, scale = prepare(gray)
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise OcrTimeout
        h, w = image.shape
        self._api.SetImageBytes(image.tobytes(), w, h, 1, w)
        if not self._api.Recognize(timeout=remaining_ms):
            raise OcrTimeout
        words = []
        level = tesserocr.RIL.WORD
        iterator = self._api.GetIterator()
        if iterator is None:
            return []
        for item in tesserocr.iterate_level(iterator, level):
            try:
                text = item.GetUTF8Text(level)
            except RuntimeError:  # tesserocr's way of saying "an empty word"
                continue
            box = item.BoundingBox(level)
            if not text or box is None:
                continue
            x0, y0, x1, y1 = (round(v / scale) for v in box)
            conf = float(item.Confidence(level))
            words.append(Word(text, x0, y0, max(1, x1 - x0), max(1, y1 - y0), conf))
        return words

    def close(self) -> None:
        self._api.End()


@dataclass
class _Job:
    gray: npt.NDArray[np.uint8]
    deadline: float
    future: Future[list[Word]]


class OcrPool:
    """A fixed number of worker threads, each owning one single-threaded engine.

    Tesseract releases the GIL while it recognises, so workers run on separate cores.
    Jobs past their deadline are failed without being run.
    """

    def __init__(self, make_engine: Callable[[], OcrEngine], workers: int) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = []
        ready = threading.Barrier(workers + 1)
        for i in range(workers):
            thread = threading.Thread(
                target=self._work, args=(make_engine, ready), name=f"keystep-ocr-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        try:
            ready.wait(timeout=60)
        except threading.BrokenBarrierError:
            self.close()
            raise RuntimeError("an OCR engine failed to start") from None

    def submit(self, gray: npt.NDArray[np.uint8], *, deadline: float) -> Future[list[Word]]:
        future: Future[list[Word]] = Future()
        self._queue.put(_Job(gray, deadline, future))
        return future

    def _work(self, make_engine: Callable[[], OcrEngine], ready: threading.Barrier) -> None:
        try:
            engine = make_engine()
        except Exception:
            # The constructor waiting on the barrier reports the failure.
            ready.abort()
            return
        try:
            # The first recognition loads the LSTM model: pay that now, not on frame one.
            warm = np.full((24, 64), 255, dtype=np.uint8)
            warm[8:16, 8:56] = 0
            engine.read_words(warm, deadline=time.monotonic() + 30)
        except Exception:
            engine.close()
            ready.abort()
            return
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            engine.close()  # another worker failed to start: the pool is not built
            return
        try:
            while (job := self._queue.get()) is not None:
                if not job.future.set_running_or_notify_cancel():
                    continue
                if time.monotonic() >= job.deadline:
                    job.future.set_exception(OcrTimeout())
                    continue
                try:
                    job.future.set_result(engine.read_words(job.gray, deadline=job.deadline))
                except Exception as exc:  # handed to the waiting frame, which drops it
                    job.future.set_exception(exc)
        finally:
            engine.close()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
