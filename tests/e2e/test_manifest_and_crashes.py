"""The manifest bounds what reaches the outbox; kill -9 never leaves it inconsistent."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from xsession import events_of, make_home, start_recorder, stop_recorder, tkapp, unseal_all, xvfb

from keystep.model.manifest import default_manifest_text

pytestmark = [pytest.mark.x11, pytest.mark.slow]

KILL_RUNS = 10


def narrow_manifest() -> str:
    doc = yaml.safe_load(default_manifest_text())
    del doc["collect"]["pointer.move"]
    doc["collect"]["window.focus"]["fields"] = ["window", "app", "title"]
    doc["collect"]["text.typed"]["fields"] = ["text", "t_end"]
    doc["batching"]["max_seconds"] = 1
    return yaml.safe_dump(doc)


def _activity(display: str, wid: str, seconds: float) -> subprocess.Popen[bytes]:
    script = (
        f"end=$((SECONDS+{int(seconds) + 1})); while [ $SECONDS -lt $end ]; do "
        f"xdotool mousemove --window {wid} 100 115 click 1 type --delay 20 'abc def'; "
        f"xdotool mousemove --window {wid} 300 300 mousemove --window {wid} 100 250 click 5; done"
    )
    return subprocess.Popen(["bash", "-c", script], env={**os.environ, "DISPLAY": display})


def test_undeclared_data_never_reaches_the_outbox_and_kill_9_is_safe(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", manifest_yaml=narrow_manifest())
    with xvfb(":55", wm=True) as d, tkapp(d, tmp_path / "app.json") as (w, _):
        rec = start_recorder(home, d)
        act = _activity(d, w, 3)
        act.wait()
        rc, _out, err = stop_recorder(rec)
        assert rc == 0, err
        events = events_of(unseal_all(home))
        kinds = {e.kind for e in events}
        assert {"pointer.down", "text.typed", "window.focus"} <= kinds
        assert "pointer.move" not in kinds
        for e in events:
            if e.kind == "window.focus":
                assert set(e.data) <= {"window", "app", "title"}
            if e.kind == "text.typed":
                assert set(e.data) <= {"text", "t_end"}

        rng = random.Random(7)
        sealed_before = len(unseal_all(home))
        for _ in range(KILL_RUNS):
            rec = start_recorder(home, d)
            act = _activity(d, w, 3)
            time.sleep(rng.uniform(0.3, 2.5))
            os.kill(rec.pid, signal.SIGKILL)
            rec.communicate()
            act.terminate()
            act.wait()
            db = sqlite3.connect(home.outbox_db)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            db.close()
            opened = unseal_all(home)  # every row opens and verifies
            assert len(opened) >= sealed_before
            sealed_before = len(opened)
    assert sealed_before > 1
