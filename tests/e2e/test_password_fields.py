"""End to end: a secret typed at a terminal's echo-off prompt never leaves the device.

A real xterm on Xvfb runs a shell that reads a password with ``read -s`` and then a name;
xdotool types both while ``keystep record`` runs; the outbox is opened through the vault.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from a11y import ATSPI_LAUNCHER, a11y_session
from xsession import (
    events_of,
    make_home,
    start_recorder,
    stop,
    stop_recorder,
    unseal_all,
    xdo,
    xvfb,
)

from keystep.capture.fields import AtspiFocusProbe, PtyEchoProbe
from keystep.capture.frames import rebuild_frames
from keystep.capture.sources.base import WindowInfo
from keystep.model.manifest import default_manifest
from keystep.redact import RedactionSettings, Redactor  # type: ignore[attr-defined]

pytestmark = [
    pytest.mark.x11,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("xterm") is None, reason="needs Debian's xterm"),
]

DISPLAY = ":82"
TITLE = "keystep shell"
# A dictionary-word password: the token detector keeps it, so only the probe can hide it.
SECRET = "lanternorchid"
NAME = "otter river"
SCRIPT = 'read -s -p "Password: " p; echo; read -p "Name: " n; echo "$p/$n" > "$OUT"; sleep 30'
TESSDATA = "/usr/share/tesseract-ocr/5/tessdata/"


def _echo_state(pid: int) -> bool | None:
    info = WindowInfo(handle=0, app=None, title=None, pid=pid, geometry=None)
    state: bool | None = PtyEchoProbe().password_state(info)
    return state


def _wait(what: str, cond: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _ocr(images: list[np.ndarray]) -> list[str]:
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    import tesserocr
    from PIL import Image

    texts = []
    with tesserocr.PyTessBaseAPI(path=TESSDATA, lang="eng") as api:
        for img in images:
            # Only the terminal: on a mostly black screen Tesseract's page layout finds nothing.
            api.SetImage(Image.fromarray(img[40:360, 40:890]))
            texts.append(api.GetUTF8Text())
    return texts


def _xterm(display: str, out: Path, *command: str) -> subprocess.Popen[bytes]:
    """An xterm running ``command`` (with $OUT set), focused."""
    term = subprocess.Popen(
        [
            *("xterm", "-title", TITLE, "-fa", "DejaVu Sans Mono", "-fs", "14"),
            *("-geometry", "70x12+40+40", "-e", *command),
        ],
        env={**os.environ, "DISPLAY": display, "OUT": str(out)},
    )
    wid = xdo(display, "search", "--sync", "--name", f"^{TITLE}$").splitlines()[0]
    xdo(display, "windowactivate", "--sync", wid)
    return term


def test_secret_at_an_echo_off_prompt_becomes_password_and_the_next_run_survives(
    tmp_path: Path,
) -> None:
    settings = RedactionSettings.from_manifest_section(default_manifest().redaction)
    plain, _ = Redactor(settings, episode_salt=b"s" * 16).redact_text(SECRET, app="XTerm")
    assert plain == SECRET, "the secret must be one only the field probe can catch"

    out = tmp_path / "OUT"
    home = make_home(tmp_path / "home")
    with xvfb(DISPLAY, wm=True) as d:
        term = _xterm(d, out, "bash", "-c", SCRIPT)
        rec = None
        try:
            rec = start_recorder(home, d)
            assert rec.poll() is None, rec.stderr.read() if rec.stderr else ""
            # xterm owns the window (_NET_WM_PID) and the pty the shell reads from.
            _wait("the password prompt", lambda: _echo_state(term.pid) is True)
            xdo(d, "type", "--delay", "40", SECRET)
            xdo(d, "key", "Return")
            _wait("the name prompt", lambda: _echo_state(term.pid) is None)
            time.sleep(0.3)
            xdo(d, "type", "--delay", "40", NAME)
            xdo(d, "key", "Return")
            _wait("the shell's output", lambda: out.exists() and out.read_text().strip() != "")
            time.sleep(0.5)
        finally:
            code, _, err = stop_recorder(rec) if rec is not None else (None, "", "")
            stop(term)
    assert code == 0, err
    assert out.read_text().strip() == f"{SECRET}/{NAME}", "xterm did not get the keys"

    unsealed = unseal_all(home)
    events = events_of(unsealed)
    runs = [e.data["text"] for e in events if e.kind == "text.typed"]
    # The whole password run is the token, with no length; the name after it is kept.
    assert runs == ["<PASSWORD>", NAME]
    for e in events:
        assert SECRET not in repr(e.data)
        assert "_password_field" not in e.data  # the verdict never reaches the wire
    for u in unsealed:
        assert SECRET.encode() not in repr(u.content.meta).encode()

    images = [
        img for u in unsealed for img in rebuild_frames(u.content.events, u.content.frames).values()
    ]
    assert images, "no frame was kept"
    texts = _ocr(images)
    assert not [t for t in texts if SECRET in t.replace(" ", "")]
    # The OCR does read this terminal: the prompts are on the kept frames.
    assert any("Password" in t for t in texts), texts


RAW_PROMPT = Path(__file__).resolve().parents[1] / "apps" / "raw_prompt.py"


def test_secret_at_a_raw_mode_prompt_is_read_from_the_screen(tmp_path: Path) -> None:
    """ssh to another machine, sudo there: the local pty is raw, so the echo-off probe has
    nothing to say; the prompt on the terminal's last line, read from the kept frame, does."""
    out = tmp_path / "OUT"
    home = make_home(tmp_path / "home")
    with xvfb(DISPLAY, wm=True) as d:
        term = _xterm(d, out, sys.executable, str(RAW_PROMPT))
        rec = None
        try:
            rec = start_recorder(home, d)
            assert rec.poll() is None, rec.stderr.read() if rec.stderr else ""
            time.sleep(1.0)
            assert _echo_state(term.pid) is None  # raw mode: the pty says nothing
            xdo(d, "type", "--delay", "40", SECRET)
            xdo(d, "key", "Return")
            time.sleep(1.0)
            xdo(d, "type", "--delay", "40", NAME)
            xdo(d, "key", "Return")
            _wait("the script's output", lambda: out.exists() and out.read_text().strip() != "")
            time.sleep(0.5)
        finally:
            code, _, err = stop_recorder(rec) if rec is not None else (None, "", "")
            stop(term)
    assert code == 0, err
    assert out.read_text().strip() == f"{SECRET}/{NAME}", "xterm did not get the keys"
    events = events_of(unseal_all(home))
    assert [e.data["text"] for e in events if e.kind == "text.typed"] == ["<PASSWORD>", NAME]
    assert not [e for e in events if SECRET in repr(e.data)]


ATSPI_DISPLAY = ":83"
DIALOG = "keystep dialog"  # no password word in it: the title heuristics must not decide
needs_atspi = pytest.mark.skipif(
    not (os.path.exists(ATSPI_LAUNCHER) and shutil.which("zenity") and shutil.which("dbus-daemon")),
    reason="needs Debian's at-spi2-core, dbus and zenity",
)


def _zenity(display: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["zenity", "--title", DIALOG, *args],
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _activate(display: str, pid: int) -> None:
    wid = xdo(
        display, "search", "--sync", "--onlyvisible", "--pid", str(pid), "--name", f"^{DIALOG}$"
    )
    xdo(display, "windowactivate", "--sync", wid.splitlines()[0])


def _window(pid: int) -> WindowInfo:
    return WindowInfo(handle=1, app="Zenity", title=DIALOG, pid=pid, geometry=None)


@needs_atspi
def test_atspi_probe_sees_the_focused_password_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    with xvfb(ATSPI_DISPLAY, wm=True) as d, a11y_session(d, monkeypatch):
        probe = AtspiFocusProbe()
        try:
            assert probe.connected.wait(5), probe.error
            password = _zenity(d, "--password")
            entry: subprocess.Popen[str] | None = None
            try:
                _activate(d, password.pid)
                _wait(
                    "the password entry's focus",
                    lambda: bool(probe.password_state(_window(password.pid))),
                )
                # Another process's ordinary entry gets the focus: its verdict is its own.
                entry = _zenity(d, "--entry", "--text", "Your name")
                _activate(d, entry.pid)
                time.sleep(0.5)
                assert probe.password_state(_window(entry.pid)) is None
                # Back to the dialog, which does not announce its focused field again.
                _activate(d, password.pid)
                assert probe.password_state(_window(password.pid)) is True
                t = time.perf_counter()
                for _ in range(1000):
                    probe.password_state(_window(password.pid))
                print(f"AT-SPI probe cost: {(time.perf_counter() - t) * 1e3:.3f} us per call")
            finally:
                for z in (password, entry):
                    if z is None:
                        continue
                    stop(z)
                    if z.stdout is not None:
                        z.stdout.close()
        finally:
            probe.close()


@needs_atspi
def test_recorder_masks_a_gtk_password_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path / "home")
    with xvfb(":84", wm=True) as d, a11y_session(d, monkeypatch):
        rec = start_recorder(home, d)
        dialog = None
        try:
            assert rec.poll() is None
            time.sleep(1.0)  # the recorder's probe connects to the accessibility bus
            dialog = _zenity(d, "--password")
            _activate(d, dialog.pid)
            time.sleep(0.5)
            xdo(d, "type", "--delay", "40", SECRET)
            xdo(d, "key", "Return")
            typed, _ = dialog.communicate(timeout=15)
        finally:
            code, _, err = stop_recorder(rec)
            if dialog is not None:
                stop(dialog)
                if dialog.stdout is not None:
                    dialog.stdout.close()
    assert code == 0, err
    assert typed.strip() == SECRET, "zenity did not get the keys"
    events = events_of(unseal_all(home))
    assert [e.data["text"] for e in events if e.kind == "text.typed"] == ["<PASSWORD>"]
    assert not [e for e in events if SECRET in repr(e.data)]


DEMO_APP = Path(__file__).resolve().parents[2] / "scripts" / "demo_app.py"
TK_DISPLAY = ":85"
# Window-relative centres of the demo app's entries (scripts/demo.py aims at the same).
EMPLOYEE, AMOUNT, PIN, NOTES = (239, 71), (239, 185), (239, 223), (229, 388)


def _click(display: str, wid: str, at: tuple[int, int]) -> None:
    xdo(display, "mousemove", "--window", wid, str(at[0]), str(at[1]))
    xdo(display, "click", "1")
    time.sleep(0.6)


def _type(display: str, text: str) -> None:
    xdo(display, "type", "--delay", "60", text)
    time.sleep(0.6)


def test_recorder_masks_a_tk_pin_entry_by_its_label(tmp_path: Path) -> None:
    """Tk tells nothing about a `show="*"` entry: the field that took the focus (its ring
    and caret appear) is labelled "Approval PIN" on screen. Typing in the fields around it
    is kept, also right after leaving the PIN field (by Tab, then a click into the notes,
    a text area with no label; or a click into another field)."""
    home = make_home(tmp_path / "home")
    state = tmp_path / "state.json"
    with xvfb(TK_DISPLAY, wm=True) as d:
        app = subprocess.Popen(
            [sys.executable, str(DEMO_APP), str(state)], env={**os.environ, "DISPLAY": d}
        )
        rec = None
        try:
            wid = xdo(d, "search", "--sync", "--onlyvisible", "--name", "Expense report")
            wid = wid.splitlines()[0]
            xdo(d, "windowactivate", "--sync", wid)
            rec = start_recorder(home, d)
            assert rec.poll() is None, rec.stderr.read() if rec.stderr else ""
            time.sleep(1.0)
            _click(d, wid, EMPLOYEE)
            _type(d, "otter river")
            _click(d, wid, PIN)
            _type(d, "8812")
            xdo(d, "key", "Tab")
            time.sleep(0.6)
            _click(d, wid, NOTES)
            _type(d, "Taxi to the client office")
            _click(d, wid, PIN)
            _type(d, "4")
            _click(d, wid, AMOUNT)
            _type(d, "129.50")
            xdo(d, "key", "Tab")
            time.sleep(0.6)
            xdo(d, "key", "ctrl+q")  # the app writes what its fields hold, then exits
            app.wait(timeout=15)
        finally:
            code, _, err = stop_recorder(rec) if rec is not None else (None, "", "")
            stop(app)
    assert code == 0, err
    fields = json.loads(state.read_text())["fields"]
    assert fields["Approval PIN"] == 5 and fields["Amount"] == 6, "the app did not get the keys"
    events = events_of(unseal_all(home))
    runs = [e.data["text"] for e in events if e.kind == "text.typed"]
    assert runs == [
        "otter river",
        "<PASSWORD>",
        "Taxi to the client office",
        "<PASSWORD>",
        "129.50",
    ]
    assert not [e for e in events if "8812" in repr(e.data)]
