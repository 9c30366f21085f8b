"""`make demo`: record a scripted session on a virtual display and build a dataset from it.

Starts Xvfb and openbox, creates a fresh embedded deployment in ./demo-out, consents,
records a real Tk app driven by xdotool (with a card number, an email and a PIN typed
into it, to show redaction), exports the trajectory dataset through the vault, verifies
the audit chain, scans for exposure and prints where everything is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo-out"
BIN = Path(sys.executable).parent
KEYSTEP = str(BIN / "keystep")


def run(*argv: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"demo: `{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def free_display() -> int:
    for n in range(40, 100):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    sys.exit("demo: no free X display number")


def xdo(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, check=True)


def wait_window(display: str, name: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", name],
            env={**os.environ, "DISPLAY": display},
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.stdout.strip():
            return proc.stdout.split()[0]
        time.sleep(0.2)
    sys.exit(f"demo: window {name!r} did not appear")


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(mode=0o700)
    home, vault = OUT / "home", OUT / "vault"
    env = {**os.environ, "KEYSTEP_HOME": str(home), "OMP_THREAD_LIMIT": "1"}
    env.pop("KEYSTEP_MASTER_KEY", None)
    n = free_display()
    display = f":{n}"
    children: list[subprocess.Popen[bytes]] = []
    try:
        xvfb = subprocess.Popen(
            ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
            stderr=subprocess.DEVNULL,
        )
        children.append(xvfb)
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            time.sleep(0.05)
        xenv = {**env, "DISPLAY": display}
        children.append(subprocess.Popen(["openbox"], env=xenv, stderr=subprocess.DEVNULL))
        time.sleep(0.5)

        print(f"[1/6] embedded deployment in {OUT}")
        print(run(KEYSTEP, "init", "--vault", str(vault), env=env).rstrip())
        run(KEYSTEP, "consent", "accept", "--yes", env=env)
        print("      consent given to the shipped manifest (receipt in home/consent/)")

        print(f"[2/6] recording a scripted session on {display}")
        app = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo_app.py")], env=xenv)
        children.append(app)
        wid = wait_window(display, "Expense report")
        time.sleep(0.5)
        rec = subprocess.Popen(
            [KEYSTEP, "record", "--display", display, "--duration", "25"], env=env
        )
        children.append(rec)
        time.sleep(3.0)
        script: list[tuple[str, ...]] = [
            ("mousemove", "--window", wid, "239", "71"),
            ("click", "1"),
            ("type", "--delay", "60", "Dana Whitfield"),
            ("mousemove", "--window", wid, "239", "109"),
            ("click", "1"),
            ("type", "--delay", "60", "dana.whitfield@example.com"),
            ("mousemove", "--window", wid, "239", "147"),
            ("click", "1"),
            ("type", "--delay", "60", "4111 1111 1111 1111"),
            ("mousemove", "--window", wid, "239", "185"),
            ("click", "1"),
            ("type", "--delay", "60", "129.50"),
            ("mousemove", "--window", wid, "239", "223"),
            ("click", "1"),
            ("type", "--delay", "60", "8812"),
            ("key", "Tab"),
            ("mousemove", "--window", wid, "291", "271"),
            ("click", "1"),
            ("mousemove", "--window", wid, "229", "388"),
            ("click", "1"),
            ("type", "--delay", "50", "Taxi from the airport to the client office."),
            ("key", "Return"),
            ("key", "ctrl+a"),
            ("mousemove", "--window", wid, "609", "138"),
            ("click", "4"),
            ("click", "5"),
            ("click", "5"),
            ("click", "5"),
            ("click", "1"),
            ("mousemove", "--window", wid, "559", "536"),
            ("click", "1"),
            ("mousemove", "--window", wid, "609", "200"),
            ("click", "--repeat", "2", "1"),
        ]
        for step in script:
            xdo(display, *step)
            time.sleep(0.35)
        if rec.wait(timeout=60) != 0:
            sys.exit("demo: keystep record failed")
        app.terminate()
        app.wait(timeout=10)
        print(run(KEYSTEP, "status", env=env).rstrip())

        print("[3/6] exporting the trajectory dataset through the vault (builder, model-training)")
        dataset = OUT / "dataset"
        print(run(KEYSTEP, "export", "--out", str(dataset), env=env).rstrip())

        print("[4/6] audit chain and the contributor's access feed")
        print(run(KEYSTEP, "audit", "verify", env=env).rstrip())
        print(run(KEYSTEP, "audit", "log", env=env).rstrip())

        print("[5/6] exposure scan of every store")
        print(run(KEYSTEP, "audit", "exposure", env=env).rstrip())

        print("[6/6] a look at the result")
        previews = write_previews(dataset, OUT / "preview")
        print(f"""
Done. Where to look:
  dataset (Parquet):   {dataset}/data/   card: {dataset}/README.md
  load it:             .venv/bin/python -c "import datasets; print(datasets.load_dataset(
                         'parquet', data_dir='{dataset}/data')['train'])"
  step screenshots:    {OUT}/preview/ ({previews} PNGs, redacted, as the dataset holds them)
  the sealed outbox:   {home}/outbox/outbox.sqlite (ciphertext only)
  the vault:           {vault} (outside the home; master key file, as this machine has no keyring)
  more:                KEYSTEP_HOME={home} .venv/bin/keystep status | audit log | consent show""")
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def write_previews(dataset: Path, out: Path, limit: int = 12) -> int:
    """Redacted step screenshots as PNGs, annotated with the action, for a person to look at."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image, ImageDraw

    out.mkdir(exist_ok=True)
    count = 0
    for part in sorted((dataset / "data").glob("*.parquet")):
        table = pq.read_table(part, columns=["step", "action_code", "x", "y", "screenshot"])
        for row in table.to_pylist():
            shot = row["screenshot"]
            if count >= limit:
                return count
            if not shot or not shot.get("bytes"):
                continue
            img = Image.open(io.BytesIO(shot["bytes"])).convert("RGB")
            draw = ImageDraw.Draw(img)
            if row["x"] is not None and row["y"] is not None:
                x, y = row["x"], row["y"]
                draw.ellipse((x - 9, y - 9, x + 9, y + 9), outline=(255, 0, 170), width=3)
            draw.rectangle((0, 0, img.width, 22), fill=(0, 0, 0))
            draw.text((6, 5), f"step {row['step']}: {row['action_code']}", fill=(255, 255, 255))
            img.save(out / f"step-{count:03d}.png")
            count += 1
    return count


if __name__ == "__main__":
    sys.exit(main())
