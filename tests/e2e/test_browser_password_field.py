"""End to end: what is typed into a web page's password field, in Chromium with its
accessibility tree on, becomes ``<PASSWORD>``; the ordinary field next to it is kept.

Nothing else could tell: the page and window title name no secret, the fields have no
labels for the screen probe to read, and the password is a plain word the token detector
keeps. Only the accessibility bus (the focused object's role, ``password text``) decides.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

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

pytestmark = [
    pytest.mark.x11,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (
            os.path.exists(ATSPI_LAUNCHER)
            and shutil.which("chromium")
            and shutil.which("dbus-daemon")
        ),
        reason="needs Debian's chromium, at-spi2-core and dbus",
    ),
]

DISPLAY = ":87"
USER, SECRET = "alice", "bluemoon"
TITLE = "keystep form"
# The title says when the page has received every key, so the test knows they arrived. Only
# then: a title change is a new window.focus that ends the typing run it lands in, and
# Chromium passes titles on late, so one changed at every key would split runs at random.
PAGE = "data:text/html," + quote(
    f"<title>{TITLE}</title>"
    "<input id=u autofocus oninput=t()> <input id=p type=password oninput=t()>"
    f"<script>function t(){{var n=u.value.length+p.value.length;"
    f"if(n=={len(USER) + len(SECRET)})document.title='{TITLE} '+n}}</script>"
)


def _chromium(display: str, profile: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "chromium",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--force-renderer-accessibility",
            f"--user-data-dir={profile}",
            "--window-size=900,600",
            PAGE,
        ],
        # Chromium bridges its tree to AT-SPI only when told accessibility is on.
        env={**os.environ, "DISPLAY": display, "ACCESSIBILITY_ENABLED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _window(display: str, name: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", name],
            env={**os.environ, "DISPLAY": display},
            capture_output=True,
            text=True,
        ).stdout.split()
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no window named {name!r}"
        time.sleep(0.2)


def test_recorder_masks_a_chromium_password_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path / "home")
    with xvfb(DISPLAY, wm=True) as d, a11y_session(d, monkeypatch):
        rec = start_recorder(home, d)
        browser = None
        try:
            assert rec.poll() is None
            browser = _chromium(d, tmp_path / "profile")
            wid = _window(d, f"^{TITLE}")
            xdo(d, "windowactivate", "--sync", wid)
            time.sleep(2.0)  # the page's accessibility tree reaches the bus
            xdo(d, "type", "--delay", "60", USER)
            time.sleep(0.5)
            xdo(d, "key", "Tab")
            time.sleep(1.0)
            xdo(d, "type", "--delay", "60", SECRET)
            _window(d, f"^{TITLE} {len(USER) + len(SECRET)}", timeout=10)
            xdo(d, "key", "Tab")
            time.sleep(1.0)
        finally:
            code, _, err = stop_recorder(rec)
            if browser is not None:
                stop(browser)
    assert code == 0, err
    events = events_of(unseal_all(home))
    assert [e.data["text"] for e in events if e.kind == "text.typed"] == [USER, "<PASSWORD>"]
    assert not [e for e in events if SECRET in repr(e.data)]
