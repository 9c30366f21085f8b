"""Faults: one line on stderr, a non-zero exit, and nothing already recorded is lost."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
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

from keystep.model.manifest import default_manifest_text

pytestmark = pytest.mark.x11


def fast_manifest() -> str:
    doc = yaml.safe_load(default_manifest_text())
    doc["batching"]["max_seconds"] = 1
    return yaml.safe_dump(doc)


def _one_line_failure(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_home(tmp_path_factory.mktemp("faults") / "home")


def test_missing_display(home) -> None:  # type: ignore[no-untyped-def]
    _one_line_failure(keystep(home, "record", "--display", ":69", "--duration", "1"), "display")


def test_missing_record_extension(home) -> None:  # type: ignore[no-untyped-def]
    with xvfb(":53", extra=("-extension", "RECORD")) as d:
        _one_line_failure(keystep(home, "record", "--display", d, "--duration", "1"), "RECORD")


@pytest.mark.parametrize(
    ("what", "damage", "words"),
    [
        ("corrupt manifest", lambda h: h.manifest_file.write_text("collect: [oops"), ("manifest",)),
        ("manifest without consent", lambda h: h.consent_file.unlink(), ("consent",)),
        (
            "unreadable device key",
            lambda h: h.device_key_file.write_text("garbage"),
            ("device key",),
        ),
        (
            "unreadable sealing keys",
            lambda h: (h.device_dir / "sealing_keys.json").write_text("{"),
            ("sealing key",),
        ),
    ],
)
def test_bad_home(tmp_path: Path, what: str, damage, words: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    h = make_home(tmp_path / "home")
    damage(h)
    _one_line_failure(keystep(h, "record", "--display", ":69", "--duration", "1"), *words)


def test_bad_usage_exits_2(home) -> None:  # type: ignore[no-untyped-def]
    r = keystep(home, "pause", "--for", "soon")
    assert r.returncode == 2 and "duration" in r.stderr


@pytest.mark.slow
def test_full_disk_keeps_what_was_recorded(tmp_path: Path) -> None:
    h = make_home(tmp_path / "home", manifest_yaml=fast_manifest())
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(h.outbox_dir)], check=True
    )
    try:
        with xvfb(":54") as d, tkapp(d, tmp_path / "app.json") as (w, _):
            rec = start_recorder(h, d)
            xdo(d, "mousemove", "--window", w, "100", "115", "click", "1")
            xdo(d, "type", "--delay", "20", "before full")
            time.sleep(2.5)
            rc, _out, err = stop_recorder(rec)
            assert rc == 0, err
            before = unseal_all(h)
            assert before
            rec = start_recorder(h, d)
            # The disk fills up while recording.
            free = subprocess.run(
                ["df", "--output=avail", "-B1", str(h.outbox_dir)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
            filler = h.outbox_dir / "filler"
            subprocess.run(
                [
                    "dd",
                    "if=/dev/zero",
                    f"of={filler}",
                    "bs=4096",
                    f"count={max(int(free) // 4096 - 1, 0)}",
                ],
                capture_output=True,
            )
            for i in range(8):
                xdo(d, "mousemove", "--window", w, str(80 + i * 10), "45", "click", "1")
                xdo(d, "type", "--delay", "10", "more text")
                time.sleep(0.3)
            time.sleep(1.5)
            rc, _out, err = stop_recorder(rec)
            assert rc == 1
            assert "disk is full" in err and err.count("\n") == 1, err
            filler.unlink()
            after = unseal_all(h)
            assert [u.header.batch_id for u in after][: len(before)] == [
                u.header.batch_id for u in before
            ]
    finally:
        subprocess.run(["umount", "-l", str(h.outbox_dir)], check=False)


@pytest.mark.parametrize("wm", [False, True], ids=["no-wm", "openbox"])
def test_display_going_away_stops_the_recorder_and_keeps_what_it_recorded(
    tmp_path: Path, wm: bool
) -> None:
    """The X server ends under a running recorder (the session logs out, Xvfb crashes): it
    must not go on claiming to record. It seals what it has, says why on one line, and
    exits 1; its status says it stopped."""
    h = make_home(tmp_path / "home")
    with xvfb(":58", wm=wm) as d, tkapp(d, tmp_path / "app.json") as (w, _):
        rec = start_recorder(h, d)
        xdo(d, "mousemove", "--window", w, "100", "115", "click", "1")
        xdo(d, "type", "--delay", "20", "before the end")
        time.sleep(0.5)
        subprocess.run(["pkill", "-f", f"Xvfb {d} "], check=False)
        try:
            rc = rec.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        code, _out, err = stop_recorder(rec)
    assert rc is not None, "the recorder went on after its display went away"
    assert code == 1, err
    assert err.count("\n") == 1 and "display" in err, err
    status = json.loads(h.recorder_status.read_bytes())
    assert status["state"] == "stopped", status
    typed = [e.data["text"] for e in events_of(unseal_all(h)) if e.kind == "text.typed"]
    assert typed == ["before the end"], typed
