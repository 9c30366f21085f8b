"""Fidelity under a real X server: scripted sessions recorded with `keystep record`, exported,
and compared step by step with the script; and a replay round trip on a fresh app."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

pytestmark = [
    pytest.mark.x11,
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("Xvfb", "xdotool", "openbox", "xwininfo")),
        reason="needs Xvfb, xdotool, xwininfo and openbox",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
TKAPP = ROOT / "tests" / "apps" / "tkapp.py"
PAUSE = 1.0  # between scripted actions: beyond the double-click interval and frame cap


class X:
    """An Xvfb display with openbox, and the children started on it (all reaped at the end)."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.env = {**os.environ, "DISPLAY": display}
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, *cmd: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            list(cmd), env=env or self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.procs.append(p)
        return p

    def xdo(self, *args: str) -> str:
        out = subprocess.run(
            ["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=30
        )
        return out.stdout

    def stop(self, p: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if p.poll() is None:
            p.send_signal(sig)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def close(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


@pytest.fixture
def x_display(request: pytest.FixtureRequest) -> Iterator[X]:
    display = request.param
    x = X(display)
    x.spawn("Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (
            subprocess.run(
                ["xdotool", "getmouselocation"], env=x.env, capture_output=True
            ).returncode
            == 0
        ):
            break
        time.sleep(0.1)
    x.spawn("openbox")
    time.sleep(0.5)
    try:
        yield x
    finally:
        x.close()


def keystep(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEYSTEP_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "keystep.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def start_app(
    x: X, title: str, out: Path, geometry: str
) -> tuple[subprocess.Popen[bytes], int, int]:
    p = x.spawn(
        sys.executable, str(TKAPP), "--out", str(out), "--title", title, "--geometry", geometry
    )
    deadline = time.monotonic() + 15
    wid = ""
    while time.monotonic() < deadline and not wid:
        wid = x.xdo("search", "--name", f"^{title}$").strip().split("\n")[0]
        time.sleep(0.1)
    assert wid, f"{title} did not appear"
    time.sleep(0.5)
    # xdotool's getwindowgeometry is off under a reparenting WM; xwininfo is not.
    info = subprocess.run(
        ["xwininfo", "-id", wid], env=x.env, capture_output=True, text=True, timeout=10
    ).stdout
    ox = int(info.split("Absolute upper-left X:")[1].split()[0])
    oy = int(info.split("Absolute upper-left Y:")[1].split()[0])
    return p, ox, oy


def start_recording(x: X, home: Path) -> subprocess.Popen[bytes]:
    keystep(home, "init")
    keystep(home, "consent", "accept", "--yes")
    rec = x.spawn(
        sys.executable,
        "-m",
        "keystep.cli.main",
        "record",
        "--display",
        x.display,
        "--duration",
        "120",
        env={**x.env, "KEYSTEP_HOME": str(home)},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = json.loads(keystep(home, "status", "--json").stdout)
        rec_status = status.get("recorder") or {}
        # Listeners run once the recorder reports "recording"; frames come with actions.
        if rec_status.get("state") == "recording":
            time.sleep(0.5)  # the screen ring's first grab
            break
        time.sleep(0.2)
    else:
        pytest.fail("the recorder did not start")
    time.sleep(0.5)
    return rec


def export_rows(home: Path, out: Path) -> list[dict[str, Any]]:
    proc = keystep(home, "export", "--out", str(out))
    assert "0 failed" in proc.stdout and "0 rejected" in proc.stdout, proc.stdout + proc.stderr
    rows: list[dict[str, Any]] = []
    for f in sorted((out / "data").glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


@dataclass
class Truth:
    action_type: str
    x: int | None = None
    y: int | None = None
    to_x: int | None = None
    to_y: int | None = None
    text: str | None = None
    keys: tuple[str, ...] = ()
    dy: int | None = None
    title: str | None = None
    min_presses: int = 1


def pixel(row: dict[str, Any], x: int, y: int) -> tuple[int, int, int]:
    import io

    img = Image.open(io.BytesIO(row["screenshot"]["bytes"])).convert("RGB")
    r, g, b = np.asarray(img)[y, x]
    return int(r), int(g), int(b)


@pytest.mark.parametrize("x_display", [":71"], indirect=True)
def test_scripted_session_is_recovered_step_by_step(x_display: X, tmp_path: Path) -> None:
    x = x_display
    _, ax, ay = start_app(x, "app one", tmp_path / "a.json", "600x420+40+40")
    _, bx, by = start_app(x, "app two", tmp_path / "b.json", "500x420+700+40")
    x.xdo("search", "--name", "^app one$", "windowactivate", "--sync")
    time.sleep(0.5)
    home = tmp_path / "home"
    rec = start_recording(x, home)

    button = (ax + 100, ay + 45)
    entry = (ax + 170, ay + 115)
    lst = (ax + 170, ay + 290)
    truth: list[Truth] = []

    def act(t: Truth, *xdo: str) -> None:
        x.xdo(*xdo)
        truth.append(t)
        time.sleep(PAUSE)

    def at(p: tuple[int, int]) -> tuple[str, str, str]:
        return ("mousemove", str(p[0]), str(p[1]))

    one, two = "app one", "app two"
    act(Truth("click", *button, title=one), *at(button), "click", "1")
    act(Truth("right_click", *button, title=one), *at(button), "click", "3")
    act(Truth("middle_click", *lst, title=one), *at(lst), "click", "2")
    act(
        Truth("double_click", *entry, title=one),
        *at(entry),
        "click",
        "--repeat",
        "2",
        "--delay",
        "80",
        "1",
    )
    act(Truth("type", text="Blue sky", title=one), "type", "--delay", "40", "Blue sky")
    act(
        Truth("triple_click", *entry, title=one),
        *at(entry),
        "click",
        "--repeat",
        "3",
        "--delay",
        "80",
        "1",
    )
    act(Truth("type", text="Green Tea", title=one), "type", "--delay", "40", "Green Tea")
    act(Truth("key", keys=("enter",), title=one), "key", "Return")
    act(Truth("key", keys=("tab",), title=one), "key", "Tab")
    act(Truth("key", keys=("esc",), title=one), "key", "Escape")
    act(Truth("key", keys=("up",), title=one), "key", "Up")
    act(Truth("hotkey", keys=("ctrl", "shift", "t"), title=one), "key", "ctrl+shift+t")
    act(Truth("hotkey", keys=("ctrl", "a"), title=one), "key", "ctrl+a")
    act(
        Truth("scroll", *lst, dy=3, title=one),
        *at(lst),
        "click",
        "--repeat",
        "3",
        "--delay",
        "50",
        "5",
    )
    act(
        Truth("scroll", *lst, dy=-2, title=one),
        *at(lst),
        "click",
        "--repeat",
        "2",
        "--delay",
        "50",
        "4",
    )
    drag_from, drag_to = (ax + 100, ay + 250), (ax + 220, ay + 330)
    act(
        Truth("drag", *drag_from, *drag_to, title=one),
        *at(drag_from),
        "mousedown",
        "1",
        "mousemove",
        str(ax + 160),
        str(ay + 290),
        "mousemove",
        str(drag_to[0]),
        str(drag_to[1]),
        "mouseup",
        "1",
    )
    b_entry = (bx + 170, by + 115)
    act(Truth("click", *b_entry, title=one), *at(b_entry), "click", "1")
    act(Truth("type", text="red", title=two), "type", "--delay", "40", "red")
    x.xdo("keydown", "BackSpace")
    time.sleep(0.9)
    x.xdo("keyup", "BackSpace")
    truth.append(Truth("key", keys=("backspace",), title=two, min_presses=2))
    time.sleep(PAUSE)
    act(Truth("click", *button, title=two), *at(button), "click", "1")
    time.sleep(1.0)
    x.stop(rec, signal.SIGINT)
    assert rec.returncode == 0

    rows = export_rows(home, tmp_path / "out")
    got = [(r["action_type"], r["x"], r["y"], r["text"], tuple(r["keys"])) for r in rows]
    want = [(t.action_type, t.x, t.y, t.text, t.keys) for t in truth]
    assert len(rows) == len(truth), f"\n got {got}\nwant {want}"
    for i, (row, t) in enumerate(zip(rows, truth, strict=True)):
        where = f"step {i}: got {got[i]}, want {want[i]}"
        assert row["action_type"] == t.action_type, where
        for col in ("x", "y", "to_x", "to_y"):
            expected = getattr(t, col)
            if expected is None:
                assert row[col] is None, where
            else:
                assert abs(row[col] - expected) <= 2, where
        assert row["text"] == t.text, where
        if t.action_type in ("key", "hotkey"):
            assert tuple(row["keys"]) == t.keys, where
        if t.dy is not None:
            assert row["dy"] == t.dy, where
        assert row["window_title"] == t.title, where
        presses = 1
        if "presses=" in row["action_code"]:
            presses = int(row["action_code"].split("presses=")[1].rstrip(")"))
        assert presses >= t.min_presses, where
        assert row["screenshot"] is not None, f"{where}: no screenshot"
        assert (row["screen_w"], row["screen_h"]) == (1280, 800), where
    # The screenshot is the screen before the action: red button before the first click,
    # green before the second.
    swatch = (ax + 30, ay + 25)  # inside the button, clear of its white label
    red, green = pixel(rows[0], *swatch), pixel(rows[1], *swatch)
    assert red[0] > 150 and red[1] < 80, red
    assert green[1] > 120 and green[0] < 80, green


@pytest.mark.parametrize("x_display", [":72"], indirect=True)
def test_replay_round_trip_reaches_the_same_app_state(x_display: X, tmp_path: Path) -> None:
    x = x_display
    app, ax, ay = start_app(x, "replay app", tmp_path / "recorded.json", "600x420+40+40")
    x.xdo("search", "--name", "^replay app$", "windowactivate", "--sync")
    home = tmp_path / "home"
    rec = start_recording(x, home)
    steps: list[tuple[str, ...]] = [
        ("mousemove", str(ax + 100), str(ay + 45), "click", "1"),
        ("mousemove", str(ax + 170), str(ay + 115), "click", "1"),
        ("type", "--delay", "40", "Blue skyy"),
        ("key", "BackSpace"),
        ("type", "--delay", "40", " ok"),
        ("mousemove", str(ax + 170), str(ay + 290), "click", "--repeat", "4", "--delay", "50", "5"),
        ("mousemove", str(ax + 100), str(ay + 45), "click", "3"),
    ]
    for s in steps:
        x.xdo(*s)
        time.sleep(PAUSE)
    x.stop(rec, signal.SIGINT)
    x.stop(app)
    recorded = json.loads((tmp_path / "recorded.json").read_text())

    rows = export_rows(home, tmp_path / "out")
    episodes = {r["episode_id"] for r in rows}
    assert len(episodes) == 1
    fresh, fx, fy = start_app(x, "replay app", tmp_path / "replayed.json", "600x420+40+40")
    assert (fx, fy) == (ax, ay)
    x.xdo("search", "--name", "^replay app$", "windowactivate", "--sync")
    proc = keystep(
        home,
        "replay",
        "--episode",
        episodes.pop(),
        "--display",
        x.display,
        "--dataset",
        str(tmp_path / "out"),
        "--speed",
        "2",
    )
    assert "replayed" in proc.stdout
    time.sleep(0.5)
    x.stop(fresh)
    replayed = json.loads((tmp_path / "replayed.json").read_text())
    for key in ("entry", "button_color", "list_top", "scroll"):
        assert replayed[key] == recorded[key], key
    assert [c["button"] for c in replayed["clicks"]] == [c["button"] for c in recorded["clicks"]]
    assert recorded["entry"] == "Blue sky ok"
