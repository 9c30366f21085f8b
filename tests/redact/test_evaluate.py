"""The harness over the synthetic corpus, asserting the targets of issue 3."""

from __future__ import annotations

import json

import pytest

from keystep.redact import evaluate
from keystep.redact.corpus import ZERO_LEAK_ENTITIES, screens, typed_cases
from keystep.redact.normalize import Stripped


@pytest.mark.slow
def test_targets_on_the_synthetic_corpus() -> None:
    report = evaluate.run(cases=1000, screen_count=40, seed=7, bad_screens=6)
    table = report.table()
    print(table)
    for entity in ZERO_LEAK_ENTITIES:
        assert report.entities[entity].typed_leaks == 0, entity
        assert report.entities[entity].screen_leaks == 0, entity
        assert report.entities[entity].screen_planted > 0, entity
    assert report.typed_recall(evaluate.PATTERN_ENTITIES) >= 0.99
    assert report.typed_precision >= 0.9
    assert report.screen_coverage >= 0.99
    assert report.screen_precision >= 0.9
    assert report.failures() == []
    assert "targets: all met" in table
    # Tiny and huge fonts: no crash and bounded time per frame (leaks are reported).
    assert report.bad is not None and report.bad.bad_summary()["frame_ms_max"] < 10_000


def test_the_corpus_plants_what_it_says() -> None:
    cases = typed_cases(200, seed=3)
    kinds = {c.kind.split("+")[0] for c in cases}
    assert {"form", "chat", "terminal", "email", "code", "benign", "password-field"} <= kinds
    assert any("+zero-width" in c.kind for c in cases)
    for case in cases:
        for p in case.planted:
            assert Stripped(case.text[p.start : p.end]).text == p.value
    shots = list(screens(4, seed=3))
    assert {s.image.shape for s in shots} == {(800, 1280, 3)}
    assert all(g.x1 > g.x0 and g.y1 > g.y0 for s in shots for p in s.planted for g in p.glyphs)


def test_a_redactor_that_masks_nothing_fails_the_targets() -> None:
    """The harness can fail: without detectors every planted value leaks."""
    report = evaluate.Report("r0", 10, 0)
    evaluate.evaluate_typed(_Identity(), typed_cases(10, seed=1), report)  # type: ignore[arg-type]
    assert report.failures()
    assert report.entities["EMAIL_ADDRESS"].typed_leaks > 0


class _Identity:
    def redact_text(self, text: str, **_: object) -> tuple[str, int]:
        return text, 0

    def find_spans(self, text: str) -> list[object]:
        return []


def test_cli_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    from keystep.cli.main import main

    code = main(["eval", "redaction", "--cases", "60", "--screens", "2", "--seed", "7"])
    out = capsys.readouterr().out
    assert "typed recall" in out and "screen box coverage" in out
    assert code in (0, 1)
    code = main(["eval", "redaction", "--cases", "20", "--screens", "0", "--json"])
    figures = json.loads(capsys.readouterr().out)
    assert figures["cases"] == 20 and "entities" in figures
