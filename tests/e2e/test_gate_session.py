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


def test_an_idle_recorder_takes_a_pause_at_once(tmp_path: Path) -> None:
    """An idle recorder ticks slower, but the gate's file watch wakes it: a pause and a
    resume reach its status file within a fraction of a second, not at the next tick."""
    home = make_home(tmp_path / "home")
    with xvfb(":57", wm=True) as d, tkapp(d, tmp_path / "a.json") as (_w, _):
        rec = start_recorder(home, d)
        try:
            time.sleep(3.0)  # idle: no input, a still pointer

            def state_within(want: str, seconds: float) -> float:
                t0 = time.monotonic()
                while time.monotonic() - t0 < seconds:
                    doc = json.loads(home.recorder_status.read_bytes())
                    if doc["state"] == want:
                        return time.monotonic() - t0
                    time.sleep(0.01)
                raise AssertionError(f"the recorder did not report {want!r} in {seconds} s")

            # The tick is 250 ms while idle: the watch must be what brings it in sooner.
            assert keystep(home, "pause").returncode == 0
            assert state_within("paused", 0.2) < 0.2
            time.sleep(3.0)
            assert keystep(home, "resume").returncode == 0
            assert state_within("recording", 0.2) < 0.2
        finally:
            rc, _out, err = stop_recorder(rec)
        assert rc == 0, err


def test_keys_after_a_title_change_to_an_excluded_page_are_not_recorded(tmp_path: Path) -> None:
    """The same window, a new title that is excluded (a bank's sign-in page loaded in the
    browser tab being typed in): not one key typed after the change is recorded, though the
    run it lands in began before it, and the title change arrives on another connection."""
    home = make_home(tmp_path / "home")
    assert keystep(home, "exclude", "--title", "^Online Banking", "--label", "bank").returncode == 0
    with xvfb(":59", wm=True) as d, tkapp(d, tmp_path / "a.json") as (w, _):
        rec = start_recorder(home, d)
        try:
            xdo(d, "windowactivate", "--sync", w)
            xdo(d, "mousemove", "--window", w, "100", "115", "click", "1")
            time.sleep(0.3)
            for _ in range(3):
                xdo(d, "type", "--delay", "40", "plain")
                # No pause: the keys below follow the title change by milliseconds.
                xdo(d, "set_window", "--name", "Online Banking - sign in", w)
                xdo(d, "type", "--delay", "40", "bankkeys")
                time.sleep(0.3)
                xdo(d, "set_window", "--name", "keystep test app", w)
                time.sleep(0.3)
        finally:
            rc, _out, err = stop_recorder(rec)
        assert rc == 0, err
    events = events_of(unseal_all(home))
    typed = _typed(events)
    assert "plain" in typed
    assert not any(ch in typed for ch in "bk"), typed  # "plain" has neither
    assert not any("Banking" in str(e.data.get("title")) for e in events)
    assert sum(e.kind == "gap" for e in events) >= 3
