"""Re-perform an exported episode with xdotool on an X display (to check fidelity)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keystep.trajectory.actions import (
    CLICK,
    DOUBLE_CLICK,
    DRAG,
    HOTKEY,
    KEY,
    MIDDLE_CLICK,
    RIGHT_CLICK,
    SCROLL,
    TRIPLE_CLICK,
    TYPE,
)

# pyautogui key names → X keysyms (names not listed are the same, e.g. letters, F-keys
# after upper-casing: f5 → F5).
XKEYSYMS: Final[dict[str, str]] = {
    "enter": "Return",
    "return": "Return",
    "tab": "Tab",
    "esc": "Escape",
    "escape": "Escape",
    "backspace": "BackSpace",
    "delete": "Delete",
    "insert": "Insert",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "home": "Home",
    "end": "End",
    "pageup": "Prior",
    "pagedown": "Next",
    "space": "space",
    "capslock": "Caps_Lock",
    "numlock": "Num_Lock",
    "scrolllock": "Scroll_Lock",
    "printscreen": "Print",
    "apps": "Menu",
    "ctrl": "ctrl",
    "shift": "shift",
    "alt": "alt",
    "altright": "ISO_Level3_Shift",
    "win": "super",
    "browserback": "XF86Back",
    "browserforward": "XF86Forward",
    "volumeup": "XF86AudioRaiseVolume",
    "volumedown": "XF86AudioLowerVolume",
    "volumemute": "XF86AudioMute",
    "playpause": "XF86AudioPlay",
    "nexttrack": "XF86AudioNext",
    "prevtrack": "XF86AudioPrev",
}
BUTTONS: Final = {"left": "1", "middle": "2", "right": "3"}
# Longest pause kept between two steps (a long think is not worth waiting for again).
MAX_PAUSE_S: Final = 1.5
MIN_PAUSE_S: Final = 0.15


class ReplayError(RuntimeError):
    """The episode cannot be found or re-performed."""


def keysym(name: str) -> str:
    if name in XKEYSYMS:
        return XKEYSYMS[name]
    if len(name) > 1 and name[0] == "f" and name[1:].isdigit():
        return name.upper()
    return name


@dataclass(frozen=True)
class ReplayStep:
    ts: float
    commands: list[list[str]]


def commands_for(row: dict[str, Any]) -> list[list[str]]:
    """xdotool argument lists that perform one dataset row's action."""
    kind = row["action_type"]
    x, y = row.get("x"), row.get("y")
    keys = [keysym(k) for k in (row.get("keys") or [])]
    if kind in (CLICK, DOUBLE_CLICK, TRIPLE_CLICK, RIGHT_CLICK, MIDDLE_CLICK, DRAG):
        button = BUTTONS.get(row.get("button") or "left", "1")
        if kind == RIGHT_CLICK:
            button = "3"
        elif kind == MIDDLE_CLICK:
            button = "2"
        out = [["mousemove", "--sync", str(x), str(y)]]
        out += [["keydown", k] for k in keys]
        if kind == DRAG:
            out.append(["mousedown", button])
            tx, ty = row["to_x"], row["to_y"]
            for i in range(1, 5):
                mx = x + (tx - x) * i // 5
                my = y + (ty - y) * i // 5
                out.append(["mousemove", "--sync", str(mx), str(my)])
            out.append(["mousemove", "--sync", str(tx), str(ty)])
            out.append(["mouseup", button])
        else:
            n = {DOUBLE_CLICK: 2, TRIPLE_CLICK: 3}.get(kind, 1)
            out.append(["click", "--repeat", str(n), "--delay", "90", button])
        out += [["keyup", k] for k in reversed(keys)]
        return out
    if kind == SCROLL:
        out = [["mousemove", "--sync", str(x), str(y)]]
        dy, dx = row.get("dy") or 0, row.get("dx") or 0
        if dy:
            out.append(["click", "--repeat", str(abs(dy)), "--delay", "40", "5" if dy > 0 else "4"])
        if dx:
            out.append(["click", "--repeat", str(abs(dx)), "--delay", "40", "7" if dx > 0 else "6"])
        return out
    if kind == TYPE:
        return [["type", "--delay", "25", "--", row.get("text") or ""]]
    if kind == KEY:
        presses = _presses(row.get("action_code") or "")
        return [["key", "--repeat", str(presses), "--delay", "40", keys[0]]] if keys else []
    if kind == HOTKEY:
        return [["key", "+".join(keys)]] if keys else []
    raise ReplayError(f"unknown action type {kind!r}")


def _presses(code: str) -> int:
    marker = "presses="
    if marker in code:
        digits = code.split(marker, 1)[1].split(")", 1)[0]
        if digits.isdigit():
            return int(digits)
    return 1


def plan(rows: Iterable[dict[str, Any]]) -> list[ReplayStep]:
    ordered = sorted(rows, key=lambda r: r["step"])
    return [ReplayStep(float(r["ts"]), commands_for(r)) for r in ordered]


COLUMNS: Final = [
    "episode_id",
    "step",
    "ts",
    "action_type",
    "action_code",
    "x",
    "y",
    "to_x",
    "to_y",
    "button",
    "text",
    "keys",
    "dx",
    "dy",
]


def load_episode(dataset: Path, episode_id: str) -> list[dict[str, Any]]:
    """The rows of one episode from an exported dataset folder (any of the three formats)."""
    tables: list[pa.Table] = []
    parquet = sorted((dataset / "data").glob("*.parquet"))
    arrows = sorted(dataset.glob("data-*.arrow"))
    for f in parquet:
        t = pq.read_table(f, columns=COLUMNS, filters=[("episode_id", "=", episode_id)])
        tables.append(t)
    for f in arrows:
        with pa.OSFile(str(f), "rb") as src:
            t = pa.ipc.open_stream(src).read_all().select(COLUMNS)
        tables.append(t.filter(pc.equal(t["episode_id"], episode_id)))
    rows = [r for t in tables for r in t.to_pylist()]
    if not rows:
        for f in sorted(dataset.glob("shard-*.tar")):
            rows += _webdataset_rows(f, episode_id)
    return rows


def _webdataset_rows(shard: Path, episode_id: str) -> list[dict[str, Any]]:
    import json
    import tarfile

    out = []
    with tarfile.open(shard) as tar:
        for m in tar.getmembers():
            if m.name.startswith(episode_id + "_") and m.name.endswith(".json"):
                fh = tar.extractfile(m)
                if fh is not None:
                    out.append(json.loads(fh.read()))
    return out


def replay(
    steps: Sequence[ReplayStep],
    *,
    display: str,
    speed: float = 1.0,
    xdotool: str = "xdotool",
) -> int:
    """Perform the steps on ``display``, keeping the recorded pauses (capped); returns the
    number of xdotool commands run."""
    env = {**os.environ, "DISPLAY": display}
    n = 0
    prev: float | None = None
    for step in steps:
        if prev is not None:
            pause = min(max(step.ts - prev, MIN_PAUSE_S), MAX_PAUSE_S) / max(speed, 0.01)
            time.sleep(pause)
        prev = step.ts
        for cmd in step.commands:
            proc = subprocess.run(
                [xdotool, *cmd], env=env, capture_output=True, text=True, timeout=30, check=False
            )
            if proc.returncode != 0:
                raise ReplayError(f"xdotool {cmd[0]} failed: {proc.stderr.strip()[:200]}")
            n += 1
    return n
