"""End to end: pause, exclusion, forget and withdrawal leave gaps (or nothing), never content."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from xsession import (
    events_of,
    keystep,
    make_home,
    start_recorder,
    stop_recorder,
    tkapp,
    unseal_all,
    xdo,
    xvfb,
)

from keystep.home import write_json

pytestmark = [pytest.mark.x11, pytest.mark.slow]


def _typed(events: list) -> str:
    return " ".join(e.data["text"] for e in events if e.kind == "text.typed")


def test_pause_exclusion_forget_and_withdrawal(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    r = keystep(home, "exclude", "--title", "^secret notes$", "--label", "notes")
    assert r.returncode == 0, r.stderr
    with (
        xvfb(":52", wm=True) as d,
        tkapp(d, tmp_path / "a.json") as (w1, _),
        tkapp(d, tmp_path / "b.json", title="secret notes", geometry="500x400+700+60") as (w2, _),
    ):
        rec = start_recorder(home, d)
        try:
            xdo(d, "windowactivate", "--sync", w1)
            xdo(d, "mousemove", "--window", w1, "100", "115", "click", "1")
            xdo(d, "type", "--delay", "30", "alpha words")
            time.sleep(0.3)
            t_pause = time.time()
            assert keystep(home, "pause").returncode == 0
            t_paused = time.time()
            xdo(d, "type", "--delay", "30", "pausedtoken")
            xdo(d, "mousemove", "--window", w1, "100", "45", "click", "1")
            assert keystep(home, "status", "--json").stdout.count('"paused"') >= 1
            assert keystep(home, "resume").returncode == 0
            time.sleep(0.3)
            xdo(d, "type", "--delay", "30", " after resume")
            time.sleep(0.3)
            xdo(d, "windowactivate", "--sync", w2)
            xdo(d, "mousemove", "--window", w2, "100", "115", "click", "1")
            xdo(d, "type", "--delay", "30", "excludedtoken")
            xdo(d, "mousemove", "--window", w2, "100", "45", "click", "3")
            time.sleep(0.3)
            xdo(d, "windowactivate", "--sync", w1)
            time.sleep(0.3)
            xdo(d, "mousemove", "--window", w1, "100", "115", "click", "1")
            xdo(d, "type", "--delay", "30", " back again")
            time.sleep(0.3)
        finally:
            rc, _out, err = stop_recorder(rec)
        assert rc == 0, err

        events = events_of(unseal_all(home))
        typed = _typed(events)
        assert "alpha words" in typed and "after resume" in typed and "back again" in typed
        assert "pausedtoken" not in typed and "excludedtoken" not in typed
        assert not any(e.data.get("title") == "secret notes" for e in events)
        gaps = [e for e in events if e.kind == "gap"]
        assert len(gaps) >= 2
        # The pause is one gap from when `keystep pause` ran until resume.
        pause_gap = next(g for g in gaps if t_pause <= g.t <= t_paused < g.data["t_end"])
        inside = [
            e for e in events if pause_gap.t < e.t < pause_gap.data["t_end"] and e.kind != "gap"
        ]
        assert inside == []
        # Right clicks only happened in the excluded window.
        assert not any(e.kind == "pointer.down" and e.data["button"] == "right" for e in events)

        # Forget while a recorder runs: sealed batches and the batch in assembly go.
        rec = start_recorder(home, d)
        try:
            xdo(d, "mousemove", "--window", w1, "100", "115", "click", "1")
            xdo(d, "type", "--delay", "30", "forgettoken")
            time.sleep(0.3)
            r = keystep(home, "forget", "--last", "10m")
            assert r.returncode == 0, r.stderr
            assert "batch in assembly dropped" in r.stdout
            t_forget = time.time()
            xdo(d, "type", "--delay", "30", " keptafter")
            time.sleep(0.3)
            write_json(home.consent_file, {"state": "withdrawn", "at": time.time()})
            time.sleep(0.3)
            xdo(d, "type", "--delay", "30", " withdrawntoken")
            xdo(d, "mousemove", "--window", w1, "100", "45", "click", "1")
            st = json.loads(keystep(home, "status", "--json").stdout)
            assert st["state"] == "no-consent"
        finally:
            rc, _out, err = stop_recorder(rec)
        assert rc == 0, err
    events = events_of(unseal_all(home))
    typed = _typed(events)
    assert "keptafter" in typed
    for gone in ("alpha words", "back again", "forgettoken", "withdrawntoken"):
        assert gone not in typed
    assert all(e.t >= t_forget - 11 * 60 for e in events)
    assert not any(e.kind != "gap" and e.t < t_forget - 0.5 for e in events)
