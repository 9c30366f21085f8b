"""Benchmark of on-device redaction against a naive full-frame OCR + Presidio pass.

Prints one table: every figure of keystep's redaction next to the same figure for the
naive baseline, measured in the same run on the same synthetic corpus (issue 3 targets).
The "agent" rows drive only the redaction component at one action per second on a
realistic screen mix; the whole recording agent is benchmarked by the capture bench.

    .venv/bin/python bench/redaction.py [--screens 12] [--actions 60] [--seed 7]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import numpy as np
import numpy.typing as npt
import spacy
import tesserocr
from PIL import Image
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from presidio_anonymizer import AnonymizerEngine

import keystep.redact.presidio_detector  # noqa: F401  (its offline suffix list, see below)
from keystep.redact import RedactionSettings, Redactor
from keystep.redact.corpus import (
    ZERO_LEAK_ENTITIES,
    Screen,
    Values,
    directory,
    mutate,
    render,
    screen_spec,
    typed_cases,
)
from keystep.redact.ocr import TESSDATA

Frame = npt.NDArray[np.uint8]


class _BlankSpacy(SpacyNlpEngine):
    """Presidio's spaCy engine on a blank English pipeline (no model download)."""

    def load(self) -> None:
        self.nlp = {"en": spacy.blank("en")}


class NaiveRedactor:
    """The baseline: Tesseract over the whole frame (automatic page segmentation), Presidio
    with its default recognizers over the whole text, fill the words it flags; no caching,
    no line finding, one thread."""

    def __init__(self) -> None:
        import tldextract
        from presidio_analyzer.predefined_recognizers.generic import email_recognizer

        # Same offline suffix list as keystep, or Presidio would try the network.
        email_recognizer.tldextract = tldextract.TLDExtract(  # type: ignore[attr-defined]
            suffix_list_urls=(), cache_dir=None
        )
        email_recognizer.tldextract.extract = email_recognizer.tldextract  # type: ignore[attr-defined]
        engine = _BlankSpacy(models=[{"lang_code": "en", "model_name": "blank"}])
        engine.load()
        self.analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
        self.anonymizer = AnonymizerEngine()
        self.api = tesserocr.PyTessBaseAPI(path=TESSDATA, lang="eng")

    def redact_text(self, text: str) -> str:
        results = self.analyzer.analyze(text, language="en")
        return str(self.anonymizer.anonymize(text=text, analyzer_results=results).text)

    def redact_frame(self, image: Frame) -> tuple[Frame, list[tuple[int, int, int, int]]]:
        out = image.copy()
        self.api.SetImage(Image.fromarray(image))
        self.api.Recognize()
        words: list[tuple[int, int, tuple[int, int, int, int]]] = []
        text = ""
        level = tesserocr.RIL.WORD
        for item in tesserocr.iterate_level(self.api.GetIterator(), level):
            try:
                word = item.GetUTF8Text(level)
            except RuntimeError:
                continue
            box = item.BoundingBox(level)
            if box is None:
                continue
            words.append((len(text), len(text) + len(word), box))
            text += word + " "
        boxes = []
        for result in self.analyzer.analyze(text, language="en", score_threshold=0.3):
            for start, end, (x0, y0, x1, y1) in words:
                if start < result.end and end > result.start:
                    out[y0:y1, x0:x1] = 0
                    boxes.append((x0, y0, x1 - x0, y1 - y0))
        return out, boxes


@dataclass
class ScreenScore:
    leaks: int = 0
    planted: int = 0
    glyphs: int = 0
    covered: int = 0
    boxes: int = 0
    true_boxes: int = 0

    def add(self, screen: Screen, out: Frame, boxes: list[tuple[int, int, int, int]]) -> None:
        filled = np.all(out == 0, axis=2)
        for p in screen.planted:
            ok = [bool(filled[g.y0 : g.y1, g.x0 : g.x1].all()) for g in p.glyphs]
            if p.entity in ZERO_LEAK_ENTITIES:
                self.planted += 1
                self.leaks += not all(ok)
            self.glyphs += len(ok)
            self.covered += sum(ok)
        for x, y, w, h in boxes:
            self.boxes += 1
            self.true_boxes += any(
                x < g.x1 and x + w > g.x0 and y < g.y1 and y + h > g.y0
                for p in screen.planted
                for g in p.glyphs
            )


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc (VmRSS now, VmHWM its peak), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_text(keystep: Redactor, naive: NaiveRedactor, seed: int) -> dict[str, float]:
    texts = [c.text for c in typed_cases(400, seed=seed)]
    kb = sum(len(t.encode()) for t in texts) / 1024
    figures = {}
    for name, fn in (("keystep", keystep.redact_text), ("naive", naive.redact_text)):
        for t in texts[:20]:
            fn(t)
        cpu, wall = time.thread_time(), time.perf_counter()
        for t in texts:
            fn(t)
        figures[f"{name}_cpu"] = (time.thread_time() - cpu) * 1000 / kb
        figures[f"{name}_wall"] = (time.perf_counter() - wall) * 1000 / kb
    return figures


def bench_screens(keystep: Redactor, naive: NaiveRedactor, count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    values = Values(rng, directory(seed))
    full_k: list[float] = []
    incr_k: list[float] = []
    full_n: list[float] = []
    cpu: dict[str, list[float]] = {"full_k": [], "incr_k": [], "full_n": []}
    score_k, score_n = ScreenScore(), ScreenScore()
    for i in range(count):
        spec = screen_spec(rng, values)
        screen = render(spec)
        started, cpu0 = time.perf_counter(), time.process_time()
        result = keystep.redact_frame_result(
            screen.image, window_key=f"bench-{i}", deadline=time.monotonic() + 60
        )
        full_k.append(time.perf_counter() - started)
        cpu["full_k"].append(time.process_time() - cpu0)
        assert result is not None
        score_k.add(screen, result.image, [(b.x, b.y, b.w, b.h) for b in result.boxes])
        # The next frame of the same window: two rows retyped (well under 20% of pixels).
        nxt = render(mutate(spec, rng, values, rows=2))
        started, cpu0 = time.perf_counter(), time.process_time()
        result = keystep.redact_frame_result(
            nxt.image, window_key=f"bench-{i}", deadline=time.monotonic() + 60
        )
        incr_k.append(time.perf_counter() - started)
        cpu["incr_k"].append(time.process_time() - cpu0)
        assert result is not None
        score_k.add(nxt, result.image, [(b.x, b.y, b.w, b.h) for b in result.boxes])
        started, cpu0 = time.perf_counter(), time.process_time()
        out, boxes = naive.redact_frame(screen.image)
        full_n.append(time.perf_counter() - started)
        cpu["full_n"].append(time.process_time() - cpu0)
        score_n.add(screen, out, boxes)
        out, boxes = naive.redact_frame(nxt.image)
        score_n.add(nxt, out, boxes)
    return {
        "full_k": full_k,
        "incr_k": incr_k,
        "full_n": full_n,
        "cpu": cpu,
        "k": score_k,
        "n": score_n,
    }


def agent_process(kind: str, actions: int, seed: int) -> dict[str, float]:
    """Runs in a fresh process, so its RSS is the redaction component's alone."""
    settings = RedactionSettings(names=directory(seed))
    if kind == "keystep":
        redactor = Redactor(settings, episode_salt=b"agent")

        def redact(image: Frame, key: str, deadline: float) -> bool:
            return redactor.redact_frame(image, window_key=key, deadline=deadline) is not None

    else:
        naive = NaiveRedactor()

        def redact(image: Frame, key: str, deadline: float) -> bool:
            naive.redact_frame(image)
            return time.monotonic() <= deadline

    figures = bench_agent(redact, actions, seed, settings.frame_budget_s)
    figures["rss_mb"] = _status_mb("VmHWM:")
    return figures


def bench_agent(
    redact: Callable[[Frame, str, float], bool], actions: int, seed: int, budget: float
) -> dict[str, float]:
    """One action per second on a realistic mix: mostly small changes in the focused
    window, sometimes a switch back to another window, now and then a new screen."""
    rng = random.Random(seed)
    values = Values(rng, directory(seed))
    windows = [screen_spec(rng, values, dense=rng.random() < 0.3) for _ in range(4)]
    current = 0
    kept = 0
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    for n in range(actions):
        tick = wall0 + n
        time.sleep(max(0.0, tick - time.monotonic()))
        roll = rng.random()
        if roll < 0.7:
            windows[current] = mutate(windows[current], rng, values, rows=1)
        elif roll < 0.9:
            current = rng.randrange(len(windows))
        else:
            windows[current] = screen_spec(rng, values, dense=rng.random() < 0.3)
        image = render(windows[current]).image
        kept += redact(image, f"window-{current}", time.monotonic() + budget)
    elapsed = time.monotonic() - wall0
    return {"cpu_percent": (time.process_time() - cpu0) / elapsed * 100, "kept": kept / actions}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", type=int, default=12, help="screens (each + 1 update)")
    parser.add_argument("--actions", type=int, default=60, help="simulated actions at 1/s")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    settings = RedactionSettings(names=directory(args.seed))
    started = time.perf_counter()
    keystep = Redactor(settings, episode_salt=b"bench")
    construct_k = time.perf_counter() - started
    started = time.perf_counter()
    naive = NaiveRedactor()
    construct_n = time.perf_counter() - started

    text = bench_text(keystep, naive, args.seed)
    shots = bench_screens(keystep, naive, args.screens, args.seed)
    keystep.close()

    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        agent = pool.apply(agent_process, ("keystep", args.actions, args.seed + 1))
    with spawn.Pool(1) as pool:
        agent_n = pool.apply(agent_process, ("naive", args.actions, args.seed + 1))

    k, n = shots["k"], shots["n"]
    rows = [
        ("figure", "keystep", "naive", "target"),
        ("construction, s", f"{construct_k:.2f}", f"{construct_n:.2f}", ""),
        (
            "text redaction, ms/KB CPU",
            f"{text['keystep_cpu']:.2f}",
            f"{text['naive_cpu']:.2f}",
            "<= 5",
        ),
        (
            "text redaction, ms/KB wall",
            f"{text['keystep_wall']:.2f}",
            f"{text['naive_wall']:.2f}",
            "",
        ),
        (
            "screen full frame 1280x800, median ms",
            _median_ms(shots["full_k"]),
            _median_ms(shots["full_n"]),
            "<= 400",
        ),
        (
            "screen incremental (<20% changed), median ms",
            _median_ms(shots["incr_k"]),
            _median_ms(shots["full_n"]),
            "<= 100",
        ),
        (
            "  CPU ms (all threads), full frame median",
            _median_ms(shots["cpu"]["full_k"]),
            _median_ms(shots["cpu"]["full_n"]),
            "",
        ),
        (
            "  CPU ms (all threads), incremental median",
            _median_ms(shots["cpu"]["incr_k"]),
            _median_ms(shots["cpu"]["full_n"]),
            "",
        ),
        (
            "screen leaks (pw/secret/card/ssn/email/phone/iban)",
            f"{k.leaks}/{k.planted}",
            f"{n.leaks}/{n.planted}",
            "0",
        ),
        (
            "screen glyph-box coverage",
            f"{k.covered / k.glyphs:.4f}",
            f"{n.covered / n.glyphs:.4f}",
            ">= 0.99",
        ),
        (
            "screen precision (boxes)",
            f"{k.true_boxes / max(1, k.boxes):.3f}",
            f"{n.true_boxes / max(1, n.boxes):.3f}",
            ">= 0.9",
        ),
        (
            "agent redaction CPU at 1 action/s, %",
            f"{agent['cpu_percent']:.0f}",
            f"{agent_n['cpu_percent']:.0f}",
            "",
        ),
        (
            "agent redaction RSS peak, MB",
            f"{agent['rss_mb']:.0f}",
            f"{agent_n['rss_mb']:.0f}",
            "(own process, peak)",
        ),
        (
            "actions keeping a redacted frame",
            f"{agent['kept']:.1%}",
            f"{agent_n['kept']:.1%}",
            ">= 95%",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        f"({args.screens} screens + {args.screens} updates, {args.actions} actions, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
        f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
