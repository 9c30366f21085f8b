"""Real X sessions for tests: Xvfb (+ openbox), the Tk test app, xdotool, a keystep home.

Import from a test with ``sys.path.insert(0, "<repo>/tests/apps")``. Every child process is
terminated and waited for (PID 1 in the sandbox does not reap).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TKAPP = Path(__file__).with_name("tkapp.py")
KEYSTEP = [str(Path(sys.executable).with_name("keystep"))]


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 5) -> None:
    if proc is None or proc.poll() is not None:
        if proc is not None:
            proc.wait()
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def xvfb(display: str, *, wm: bool = False, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """An Xvfb 1280x800x24 on ``display`` (and openbox when ``wm``) for the block."""
    n = display.lstrip(":")
    sock = Path(f"/tmp/.X11-unix/X{n}")
    lock = Path(f"/tmp/.X{n}-lock")
    for stale in (sock, lock):
        stale.unlink(missing_ok=True)
    server = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wmproc: subprocess.Popen[Any] | None = None
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Xvfb {display} did not start")
            time.sleep(0.05)
        time.sleep(0.2)
        if wm:
            wmproc = subprocess.Popen(
                ["openbox", "--sm-disable"],
                env={**os.environ, "DISPLAY": display},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait_for_wm(display)
        yield display
    finally:
        stop(wmproc)
        stop(server)


def _wait_for_wm(display: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = (
            subprocess.run(
                ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
                env={**os.environ, "DISPLAY": display},
                capture_output=True,
                text=True,
            )
            if shutil.which("xprop")
            else None
        )
        if out is None:
            time.sleep(1.0)
            return
        if "window id" in out.stdout:
            return
        time.sleep(0.1)


def xdo(display: str, *args: str) -> str:
    out = subprocess.run(
        ["xdotool", *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


@contextmanager
def tkapp(
    display: str, out: Path, *, title: str = "keystep test app", geometry: str = "600x420+40+40"
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """The Tk test app; yields (X window id, process). Its log is in ``out`` after exit."""
    proc = subprocess.Popen(
        [sys.executable, str(TKAPP), "--out", str(out), "--title", title, "--geometry", geometry],
        env={**os.environ, "DISPLAY": display},
    )
    try:
        wid = xdo(display, "search", "--sync", "--name", f"^{title}$").splitlines()[0]
        yield wid, proc
    finally:
        stop(proc)


_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


def master_key() -> str:
    """One master key for the homes these helpers make, passed in each child's environment."""
    return os.environ.get("KEYSTEP_MASTER_KEY") or _MASTER_KEY


@contextmanager
def _master_key_env() -> Iterator[None]:
    """The key in this process's environment only while a vault is opened here, so other
    tests' vaults (which expect their own master secret) never inherit it."""
    before = os.environ.get("KEYSTEP_MASTER_KEY")
    os.environ["KEYSTEP_MASTER_KEY"] = master_key()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("KEYSTEP_MASTER_KEY", None)
        else:
            os.environ["KEYSTEP_MASTER_KEY"] = before


def redactor_available() -> bool:
    try:
        import keystep.redact as red

        return hasattr(red, "Redactor")
    except ImportError:
        return False


def agent_env(display: str | None = None) -> dict[str, str]:
    env = {**os.environ, "KEYSTEP_MASTER_KEY": master_key()}
    if display:
        env["DISPLAY"] = display
    if not redactor_available():
        # Until keystep.redact lands; the recorder refuses to run without it otherwise.
        env["KEYSTEP_TEST_UNREDACTED"] = "1"
    return env


def make_home(root: Path, *, manifest_yaml: str | None = None, consent: bool = True) -> Any:
    """A home created by ``init_home`` (vault next to it), with consent written like the CLI."""
    from keystep.cli.setup import init_home
    from keystep.home import Home, write_json
    from keystep.model.manifest import default_manifest, load_manifest

    manifest = load_manifest(manifest_yaml) if manifest_yaml else default_manifest()
    home = Home(root)
    with _master_key_env():
        init_home(
            home,
            manifest=manifest,
            contributor="tester",
            vault_dir=root.with_name(root.name + "-vault"),
        )
    if consent:
        give_consent(home)
    _ = write_json
    return home


def give_consent(home: Any) -> None:
    from keystep.home import write_json
    from keystep.model.manifest import load_manifest

    m = load_manifest(home.manifest_file.read_bytes())
    write_json(
        home.consent_file,
        {
            "state": "given",
            "manifest_version": m.version,
            "manifest_digest": m.digest,
            "at": time.time(),
        },
    )


def keystep(
    home: Any, *args: str, display: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KEYSTEP, "--home", str(home.root), *args],
        env=agent_env(display),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_recorder(home: Any, display: str, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*KEYSTEP, "--home", str(home.root), "record", "--display", display, *extra],
        env=agent_env(display),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Ready once the recorder reports its state (listeners are running by then).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc
        try:
            doc = json.loads(home.recorder_status.read_bytes())
            if doc.get("pid") == proc.pid and doc.get("state") not in ("starting", "stopped"):
                return proc
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError("recorder did not report ready")


def stop_recorder(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str, str]:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def unseal_all(home: Any) -> list[Any]:
    """Every pending outbox batch, opened through the vault's one door as the contributor."""
    from keystep.outbox import Outbox
    from keystep.policy.model import Principal
    from keystep.vault import open_local_vault

    outbox = Outbox(home.outbox_db)
    with _master_key_env():
        vault = open_local_vault(home.vault_dir)
    try:
        who = Principal(home.read_config()["contributor_id"], "contributor")
        return [
            vault.unseal(p.envelope, principal=who, purpose="contributor-access")
            for p in outbox.pending()
        ]
    finally:
        vault.close()
        outbox.close()


def events_of(unsealed: list[Any]) -> list[Any]:
    return [e for u in unsealed for e in u.content.events]
