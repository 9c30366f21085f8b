"""The gate's answers from the files in the home: consent, pause, exclusions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keystep.capture import gate as gate_module
from keystep.capture.gate import BLOCKED, NO_CONSENT, PAUSED, RECORDING, Gate
from keystep.capture.sources.base import WindowInfo
from keystep.capture.watch import FolderWatch
from keystep.home import Home, write_json
from keystep.model.manifest import default_manifest


def _home(tmp_path: Path, *, consent: bool = True) -> tuple[Home, Gate]:
    home = Home(tmp_path)
    m = default_manifest()
    home.state_dir.mkdir(parents=True)
    home.manifest_file.write_text(m.to_yaml())
    if consent:
        write_json(
            home.consent_file,
            {"state": "given", "manifest_version": m.version, "manifest_digest": m.digest},
        )
    return home, Gate(home, m)


def test_consent_must_name_this_manifest_version_and_digest(tmp_path: Path) -> None:
    home, gate = _home(tmp_path)
    assert gate.state(10.0) == RECORDING
    write_json(
        home.consent_file, {"state": "given", "manifest_version": 1, "manifest_digest": "0" * 64}
    )
    gate.refresh(10.0)
    assert gate.state(10.0) == NO_CONSENT
    write_json(home.consent_file, {"state": "withdrawn"})
    gate.refresh(10.0)
    assert gate.state(10.0) == NO_CONSENT


def test_pause_with_and_without_end_and_unreadable(tmp_path: Path) -> None:
    home, gate = _home(tmp_path)
    write_json(home.pause_file, {"version": 1, "since": 5.0, "until": 20.0})
    gate.refresh(10.0)
    assert gate.state(10.0) == PAUSED
    assert gate.pause_since == 5.0
    gate.refresh(21.0)
    assert gate.state(21.0) == RECORDING
    write_json(home.pause_file, {"version": 1, "since": 5.0, "until": None})
    gate.refresh(1e12)
    assert gate.state(1e12) == PAUSED
    home.pause_file.write_text("{not json")
    gate.refresh(30.0)
    assert gate.state(30.0) == PAUSED and gate.pause.unreadable
    home.pause_file.unlink()
    gate.refresh(30.0)
    assert gate.state(30.0) == RECORDING


def test_conditions_block_and_failing_conditions_block(tmp_path: Path) -> None:
    gate = _home(tmp_path)[1]
    lease = {"ok": True}
    gate.add_condition("lease", lambda: lease["ok"])
    assert gate.state(1.0) == RECORDING
    lease["ok"] = False
    assert gate.state(1.0) == BLOCKED and gate.blocked_by() == ["lease"]
    gate.add_condition("broken", lambda: 1 / 0 > 0)
    lease["ok"] = True
    assert gate.state(1.0) == BLOCKED


def test_exclusions_from_manifest_local_file_and_broken_file(tmp_path: Path) -> None:
    home, gate = _home(tmp_path)
    kee = WindowInfo(1, "KeePassXC", "db.kdbx - KeePassXC", 1, None)
    editor = WindowInfo(2, "Gedit", "notes.txt", 2, None)
    assert gate.excluded(kee) and not gate.excluded(editor)
    home.exclusions_file.write_text(
        json.dumps({"version": 1, "exclusions": [{"label": "notes", "title": "^notes"}]})
    )
    gate.refresh(1.0)
    assert gate.excluded(editor)
    home.exclusions_file.write_text("garbage")
    gate.refresh(2.0)
    assert gate.excluded(WindowInfo(3, "Xterm", "shell", 3, None))  # fail safe: all excluded
    assert not gate.excluded(None)


@pytest.mark.parametrize("watch", ["kernel", "polling"])
def test_a_change_is_seen_at_the_next_refresh_and_nothing_is_read_when_none_came(
    tmp_path: Path, watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the kernel's watch a pause or a withdrawal is seen at the very next refresh and
    a refresh with no change reads nothing; a gate whose watch cannot be set up (here: a
    folder that does not exist) looks at every file at every refresh instead."""
    home, gate = _home(tmp_path)
    if watch == "polling":
        gate.watch = FolderWatch([tmp_path / "absent"], ["pause.json"])
    assert (gate.watch.fileno() is None) == (watch == "polling")
    looks: list[str] = []
    real_stamp = gate_module._stamp
    monkeypatch.setattr(gate_module, "_stamp", lambda p: looks.append(p) or real_stamp(p))
    gate.refresh(100.0)
    assert gate.state(100.0) == RECORDING
    looks.clear()
    gate.refresh(100.01)  # well within the once-a-second full look
    assert (looks == []) == (watch == "kernel")
    write_json(home.pause_file, {"version": 1, "since": 100.0, "until": None})
    gate.refresh(100.02)
    assert gate.state(100.02) == PAUSED
    home.pause_file.unlink()
    write_json(home.consent_file, {"state": "withdrawn"})
    gate.refresh(100.03)
    assert gate.state(100.03) == NO_CONSENT
