"""End to end: a real X session driven by xdotool, recorded by `keystep record`, unsealed."""

from __future__ import annotations

import contextlib
import gzip
import json
import lzma
import os
import sqlite3
import tempfile
import time
import zlib
from pathlib import Path

import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
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

from keystep.capture.frames import rebuild_frames
from keystep.outbox import Outbox
from keystep.seal.envelope import EnvelopeError, parse_envelope, unwrap_dek, verify_signature

pytestmark = [pytest.mark.x11, pytest.mark.slow]

# Words found in no library or binary, so a hit in the temp folder is ours.
TYPED = "fern quorvish mango"
RED = (0xD0, 0x10, 0x10)


def _decompressions(data: bytes) -> list[bytes]:
    out = [data]
    for fn in (
        zlib.decompress,
        gzip.decompress,
        lzma.decompress,
        lambda b: zstandard.ZstdDecompressor().decompress(b, max_output_size=1 << 28),
    ):
        with contextlib.suppress(Exception):
            out.append(fn(data))
    return out


def _sqlite_values(path: Path) -> list[bytes]:
    values: list[bytes] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in db.execute(f'SELECT * FROM "{t}"'):
                for v in row:
                    if isinstance(v, bytes):
                        values.append(v)
                    elif isinstance(v, str):
                        values.append(v.encode())
        db.close()
    except sqlite3.Error:
        pass
    return values


def find_plaintext(roots: list[Path], needle: bytes, *, skip: set[Path], since: float) -> list[str]:
    hits = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = Path(dirpath) / name
                try:
                    if p in skip or not p.is_file() or p.stat().st_mtime < since:
                        continue
                    data = p.read_bytes()
                except OSError:
                    continue
                blobs = _decompressions(data)
                if data.startswith(b"SQLite format 3"):
                    blobs += [d for v in _sqlite_values(p) for d in _decompressions(v)]
                if any(needle in b for b in blobs):
                    hits.append(str(p))
    return hits


def test_recorded_session_is_complete_sealed_and_leaves_no_plaintext(tmp_path: Path) -> None:
    since = time.time() - 1
    home = make_home(tmp_path / "home")
    app1_log, app2_log = tmp_path / "app1.json", tmp_path / "app2.json"
    with (
        xvfb(":51", wm=True) as d,
        tkapp(d, app1_log) as (w1, _p1),
        tkapp(d, app2_log, title="second app", geometry="500x400+700+60") as (w2, _p2),
    ):
        rec = start_recorder(home, d)
        assert rec.poll() is None, rec.stderr.read() if rec.stderr else ""
        try:
            # A second recorder on the same home refuses, with one line.
            second = keystep(home, "record", "--display", d, "--duration", "2", display=d)
            assert second.returncode == 1
            assert "another recorder" in second.stderr and second.stderr.count("\n") == 1

            xdo(d, "windowactivate", "--sync", w1)
            time.sleep(0.8)
            xdo(d, "mousemove", "--window", w1, "100", "45", "click", "1")  # the red button
            time.sleep(0.8)
            xdo(d, "mousemove", "--window", w1, "100", "115", "click", "1")  # the entry
            time.sleep(0.3)
            xdo(d, "type", "--delay", "40", TYPED)
            xdo(d, "key", "Return", "ctrl+q")
            time.sleep(0.8)
            xdo(d, "mousemove", "--window", w1, "100", "250", "click", "3")
            xdo(d, "click", "5", "click", "5", "click", "5")
            time.sleep(0.8)
            xdo(d, "windowactivate", "--sync", w2)
            time.sleep(0.5)
            xdo(d, "mousemove", "--window", w2, "60", "45", "click", "1")
            time.sleep(0.5)

            st = json.loads(keystep(home, "status", "--json").stdout)
            assert st["schema"] == "keystep-status/1"
            assert st["state"] == "recording"
            assert st["recorder"]["pid"] == rec.pid
            assert st["indicator"] == "none: this desktop has no system tray"  # openbox has none
            assert st["vault"].get("master_key")
        finally:
            rc, out, err = stop_recorder(rec)
        assert rc == 0, err
        assert "stopped" in out

    app1 = json.loads(app1_log.read_text())
    assert app1["entry"] == TYPED
    batches = unseal_all(home)
    assert batches
    events = events_of(batches)
    kinds = [e.kind for e in events]

    # Clicks: position and button, as the app saw them.
    downs = [e for e in events if e.kind == "pointer.down"]
    click = app1["clicks"][0]
    assert any(e.data == {"x": click["x"], "y": click["y"], "button": "left"} for e in downs)
    assert any(e.data["button"] == "right" for e in downs)
    assert len([e for e in events if e.kind == "pointer.up"]) == len(downs) == 4

    # Typed characters only inside text.typed; key events name only special keys or hotkeys.
    typed = "".join(e.data["text"] for e in events if e.kind == "text.typed")
    assert typed == TYPED
    keys = [e.data["key"] for e in events if e.kind in ("key.down", "key.up")]
    assert set(keys) == {"enter", "ctrl", "q"}
    assert keys.count("q") == 2 and keys.count("ctrl") == 2

    # Scrolls (positive dy = down) and focus changes.
    assert [e.data["dy"] for e in events if e.kind == "pointer.scroll"] == [1, 1, 1]
    titles = [e.data.get("title") for e in events if e.kind == "window.focus"]
    assert "keystep test app" in titles and "second app" in titles
    assert "pointer.move" in kinds

    # The frame kept before the button press shows the button still red.
    press = next(i for i, e in enumerate(events) if e.kind == "pointer.down")
    focus = next(
        e
        for e in events[:press]
        if e.kind == "window.focus" and e.data.get("title") == "keystep test app"
    )
    gx, gy = focus.data["geometry"][:2]
    for u in batches:
        images = rebuild_frames(u.content.events, u.content.frames)
        if events[press] in u.content.events:
            before = [
                e
                for e in u.content.events[: u.content.events.index(events[press])]
                if e.kind == "screen.frame"
            ]
            assert before, "no frame before the first click"
            img = images[before[-1].data["frame"]]
            assert tuple(img[gy + 25, gx + 25]) == RED
            assert img.shape == (800, 1280, 3)
    assert (
        batches[0]
        .content.events[[e.kind for e in batches[0].content.events].index("screen.frame")]
        .data.get("base")
        is None
    )  # every batch starts with a keyframe

    # Every outbox row: a v1 envelope, signed by the device, closed to any other key.
    device = load_pem_private_key(home.device_key_file.read_bytes(), None)
    device_pub = device.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    outbox = Outbox(home.outbox_db)
    rows = outbox.pending()
    outbox.close()
    assert len(rows) == len(batches)
    for row in rows:
        env = parse_envelope(row.envelope)
        verify_signature(env, device_pub)
        with pytest.raises(EnvelopeError):
            unwrap_dek(env, X25519PrivateKey.generate())
        tampered = bytearray(row.envelope)
        tampered[len(tampered) // 2] ^= 0x01
        with pytest.raises(EnvelopeError):
            verify_signature(parse_envelope(bytes(tampered)), device_pub)

    # Nothing typed is on disk in the clear, not even compressed.
    skip = {app1_log, app2_log}
    roots = [home.root, Path(tempfile.gettempdir())]
    for needle in (TYPED.encode(), b"quorvish"):
        assert find_plaintext(roots, needle, skip=skip, since=since) == []
