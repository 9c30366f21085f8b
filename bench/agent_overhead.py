"""Recording-agent overhead next to a naive recorder, on one scripted X session.

    .venv/bin/python bench/agent_overhead.py [--seconds 60] [--display :56]
        [--redaction off|on|both] [--threads]

A 1280x800 Xvfb with openbox and the Tk test app; a driver sends 10 actions/s (clicks,
typed keys, scrolls) and 50 pointer moves/s through XTEST. In the same run, side by side:
`keystep record` (capture + gate + frames + seal + outbox) and a naive recorder (pynput, a
PNG screenshot at every press, events as plain JSON lines, as older open-source recorders
do). Prints ONE table: CPU (% of one core, the process and its threads) while driven and
while idle (15 s with no input before the drive), peak RSS, p50/p99 input-to-outbox
latency, frames kept, bytes per frame and per active hour. ``--threads`` adds the agent's
CPU per thread (names from ``py-spy dump`` when py-spy is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "apps"))

from xsession import make_home, redactor_available, stop, stop_recorder, tkapp, xvfb

from keystep.outbox import Outbox

NAIVE = r"""
import io, json, os, sys, time, mss
from pynput import keyboard, mouse
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
log = open(os.path.join(out, "events.jsonl"), "a")
sct = mss.MSS()
n = [0]
def shot():
    img = sct.grab(sct.monitors[0])
    n[0] += 1
    with open(os.path.join(out, f"{n[0]:06d}.png"), "wb") as fh:
        fh.write(mss.tools.to_png(img.rgb, img.size))
def click(x, y, b, pressed, *a):
    ev = {"t": time.time(), "k": "click", "x": x, "y": y, "b": str(b), "p": pressed}
    log.write(json.dumps(ev) + "\n")
    if pressed: shot()
def move(x, y, *a):
    log.write(json.dumps({"t": time.time(), "k": "move", "x": x, "y": y}) + "\n")
def scroll(x, y, dx, dy, *a):
    log.write(json.dumps({"t": time.time(), "k": "scroll", "dx": dx, "dy": dy}) + "\n")
def press(k, *a):
    log.write(json.dumps({"t": time.time(), "k": "key", "key": str(k)}) + "\n"); shot()
def release(k, *a):
    log.write(json.dumps({"t": time.time(), "k": "keyup", "key": str(k)}) + "\n")
m = mouse.Listener(on_click=click, on_move=move, on_scroll=scroll); m.start()
k = keyboard.Listener(on_press=press, on_release=release); k.start()
try:
    while True: time.sleep(0.5)
except KeyboardInterrupt:
    log.close()
"""

PROFILED = """
import cProfile, sys
out = sys.argv[1]
sys.argv = ["keystep", *sys.argv[2:]]
from keystep.cli.main import main
prof = cProfile.Profile()
try:
    prof.runcall(main)
finally:
    prof.dump_stats(out)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime: the process, its threads and any waited-for children.
    return sum(int(f) for f in fields[11:15]) / ticks


def thread_cpu_seconds(pid: int) -> dict[int, tuple[float, float]]:
    """CPU seconds (user, system) of each live thread of ``pid``, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[float, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[int(task.name)] = (int(fields[11]) / ticks, int(fields[12]) / ticks)
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by thread id, from ``py-spy dump`` (empty without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    try:
        out = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {int(m[1]): m[2] for m in re.finditer(r'^Thread (\d+) \(\w+\): "([^"]*)"', out, re.M)}


def per_thread(
    pid: int,
    before: dict[int, tuple[float, float]],
    after: dict[int, tuple[float, float]],
    elapsed: float,
) -> list[tuple[str, float, float]]:
    """(thread, user %, system %) of one core over the run, busiest first (threads that
    ended meanwhile are in the process total only)."""
    names = thread_names(pid)
    rows: dict[str, tuple[float, float]] = {}
    for tid, (user, system) in after.items():
        name = names.get(tid) or Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        user0, system0 = before.get(tid, (0.0, 0.0))
        rows[f"{tid} {name}"] = (
            100 * (user - user0) / elapsed,
            100 * (system - system0) / elapsed,
        )
    return sorted(((k, u, s) for k, (u, s) in rows.items()), key=lambda r: -(r[1] + r[2]))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def drive(display: str, wid_geom: tuple[int, int], seconds: float) -> None:
    import Xlib.display
    import Xlib.X
    import Xlib.XK
    from Xlib.ext import xtest

    d = Xlib.display.Display(display)
    gx, gy = wid_geom
    letters = [d.keysym_to_keycode(Xlib.XK.string_to_keysym(c)) for c in "abcdefgh"]
    space = d.keysym_to_keycode(Xlib.XK.string_to_keysym("space"))
    end = time.monotonic() + seconds
    i = 0
    next_t = time.monotonic()
    while time.monotonic() < end:
        # 60 ticks/s: a move on 5 of every 6 ticks (50/s), an action on the 6th (10/s).
        x = gx + 30 + (i * 7) % 520
        y = gy + 200 + (i * 3) % 170
        xtest.fake_input(d, Xlib.X.MotionNotify, x=x, y=y)
        if i % 6 == 5:
            a = (i // 6) % 10
            if a == 0:  # click the button / the entry
                xtest.fake_input(d, Xlib.X.MotionNotify, x=gx + 100, y=gy + (45 if i % 12 else 115))
                xtest.fake_input(d, Xlib.X.ButtonPress, 1)
                xtest.fake_input(d, Xlib.X.ButtonRelease, 1)
            elif a == 9:
                xtest.fake_input(d, Xlib.X.ButtonPress, 5)
                xtest.fake_input(d, Xlib.X.ButtonRelease, 5)
            else:
                kc = space if a == 8 else letters[(i // 6) % len(letters)]
                xtest.fake_input(d, Xlib.X.KeyPress, kc)
                xtest.fake_input(d, Xlib.X.KeyRelease, kc)
        d.sync()
        i += 1
        next_t += 1 / 60
        time.sleep(max(0.0, next_t - time.monotonic()))
    d.close()


def watch_outbox(path: Path, seen: dict[str, float], stop_flag: threading.Event) -> None:
    while not stop_flag.is_set():
        try:
            ob = Outbox(path)
            for p in ob.pending():
                seen.setdefault(p.batch_id, time.time())
            ob.close()
        except Exception:
            pass
        stop_flag.wait(0.2)


def measure_agent(
    display: str,
    geom: tuple[int, int],
    seconds: float,
    redact: bool,
    work: Path,
    profile: Path | None = None,
    idle_seconds: float = 15.0,
) -> dict[str, Any]:
    from xsession import agent_env, unseal_all

    home = make_home(work / f"home-{int(redact)}")
    env = agent_env(display)
    if not redact:
        env["KEYSTEP_TEST_UNREDACTED"] = "1"
    elif not redactor_available():
        return {"name": "keystep (with redaction)", "note": "keystep.redact not available"}
    cmd = [str(Path(sys.executable).with_name("keystep"))]
    if profile is not None:  # cProfile of the recorder's main thread, dumped as it exits
        cmd = [sys.executable, "-c", PROFILED, str(profile.with_suffix(f".{int(redact)}.prof"))]
    rec = subprocess.Popen(
        [*cmd, "--home", str(home.root), "record", "--display", display],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    naive_dir = work / f"naive-{int(redact)}"
    naive = subprocess.Popen(
        [sys.executable, "-c", NAIVE, str(naive_dir)], env={**os.environ, "DISPLAY": display}
    )
    time.sleep(2)
    # Idle first: both running, nobody at the keyboard, the pointer still.
    i0, ni0, ti0 = cpu_seconds(rec.pid), cpu_seconds(naive.pid), time.monotonic()
    time.sleep(idle_seconds)
    i1, ni1, ti1 = cpu_seconds(rec.pid), cpu_seconds(naive.pid), time.monotonic()
    seen: dict[str, float] = {}
    flag = threading.Event()
    watcher = threading.Thread(target=watch_outbox, args=(home.outbox_db, seen, flag))
    watcher.start()
    threads0 = thread_cpu_seconds(rec.pid)
    cpu0, ncpu0, t0 = cpu_seconds(rec.pid), cpu_seconds(naive.pid), time.monotonic()
    drive(display, geom, seconds)
    cpu1, ncpu1, t1 = cpu_seconds(rec.pid), cpu_seconds(naive.pid), time.monotonic()
    threads = per_thread(rec.pid, threads0, thread_cpu_seconds(rec.pid), t1 - t0)
    rss, nrss = peak_rss_mb(rec.pid), peak_rss_mb(naive.pid)
    naive.send_signal(2)
    try:
        naive.wait(timeout=10)
    except subprocess.TimeoutExpired:  # its listeners can hang on a closing display
        naive.kill()
        naive.wait()
    rc, _out, err = stop_recorder(rec)
    time.sleep(0.5)
    flag.set()
    watcher.join()
    ob = Outbox(home.outbox_db)
    for p in ob.pending():
        seen.setdefault(p.batch_id, time.time())
    env_bytes = ob.counts()["pending_bytes"]
    ob.close()
    batches = unseal_all(home)
    lat = [
        seen[u.header.batch_id] - e.t
        for u in batches
        for e in u.content.events
        if u.header.batch_id in seen and e.kind != "screen.frame"
    ]
    frames = sum(len(u.content.frames) for u in batches)
    frame_bytes = sum(len(f) for u in batches for f in u.content.frames)
    pngs = list(naive_dir.glob("*.png"))
    naive_bytes = sum(p.stat().st_size for p in naive_dir.iterdir())
    elapsed = t1 - t0
    agent = {
        "name": "keystep record" + (" (screen redaction on)" if redact else " (no redaction)"),
        "cpu": 100 * (cpu1 - cpu0) / elapsed,
        "idle": 100 * (i1 - i0) / (ti1 - ti0),
        "rss": rss,
        "p50": statistics.median(lat) if lat else float("nan"),
        "p99": sorted(lat)[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        "frames": frames,
        "bpf": frame_bytes / frames if frames else 0,
        "bph": env_bytes * 3600 / elapsed,
        "rc": rc,
        "err": err.strip()[-200:],
        "threads": threads,
    }
    naive_row = {
        "name": "naive (pynput + PNG per press, plain)",
        "cpu": 100 * (ncpu1 - ncpu0) / elapsed,
        "idle": 100 * (ni1 - ni0) / (ti1 - ti0),
        "rss": nrss,
        "p50": 0.0,
        "p99": 0.0,
        "frames": len(pngs),
        "bpf": sum(p.stat().st_size for p in pngs) / len(pngs) if pngs else 0,
        "bph": naive_bytes * 3600 / elapsed,
    }
    return {"agent": agent, "naive": naive_row}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--display", default=":56")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--redaction",
        choices=("off", "on", "both"),
        default="both",
        help="run the agent without screen redaction, with it, or both (one run each)",
    )
    ap.add_argument("--threads", action="store_true", help="also print the agent's CPU per thread")
    ap.add_argument(
        "--profile",
        type=Path,
        help="write a cProfile of the agent's main thread to FILE.<redaction>.prof",
    )
    args = ap.parse_args()
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.redaction]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, xvfb(args.display, wm=True) as d:
        work = Path(tmp)
        with tkapp(d, work / "app.json") as (_wid, _p):
            geom = (41, 62)
            for redact in modes:
                got = measure_agent(d, geom, args.seconds, redact, work, args.profile)
                if "agent" in got:
                    rows += [got["agent"], got["naive"]]
                else:
                    rows.append(got)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"\n{args.seconds:.0f} s, 10 actions/s + 50 moves/s, 1280x800 Xvfb + Tk app "
        f"({os.cpu_count()} cores)"
    )
    head = (
        f"{'recorder':44} {'CPU %core':>9} {'idle %core':>10} {'peak RSS MB':>11} "
        f"{'p50 lat s':>9} {'p99 lat s':>9} {'frames':>6} {'B/frame':>8} {'MB/active h':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if "note" in r:
            print(f"{r['name']:44} {r['note']}")
            continue
        print(
            f"{r['name']:44} {r['cpu']:9.2f} {r['idle']:10.2f} {r['rss']:11.1f} {r['p50']:9.2f} "
            f"{r['p99']:9.2f} {r['frames']:6d} {r['bpf']:8.0f} {r['bph'] / 1e6:11.1f}"
        )
    if args.threads:
        for r in rows:
            if "threads" in r:
                print(f"\n{r['name']}: CPU % of one core by thread")
                print(f"  {'tid name':40} {'total':>6} {'user':>6} {'system':>6}")
                for name, user, system in r["threads"]:
                    print(f"  {name:40} {user + system:6.2f} {user:6.2f} {system:6.2f}")
    _ = stop
    return 0


if __name__ == "__main__":
    sys.exit(main())
