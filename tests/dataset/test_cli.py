"""`keystep export | label | replay` on an embedded home (batches sealed as the recorder does)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from synth import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))

from xsession import make_home, master_key

from keystep.capture.sealer import Sealer, load_device_key
from keystep.cli.main import main
from keystep.cli.setup import sealing_keys_file
from keystep.model.manifest import load_manifest
from keystep.outbox import Outbox


def record(home: Any, *, batches: int = 2, actions: int = 4, seed: int = 1) -> Session:
    """Seal scripted batches with the home's device key into its outbox."""
    cfg = home.read_config()
    sealer = Sealer(
        device_id=cfg["device_id"],
        device_key=load_device_key(home.device_key_file),
        pseudonym=cfg["pseudonym"],
        manifest=load_manifest(home.manifest_file.read_bytes()),
        keys_file=sealing_keys_file(home),
    )
    session = Session(seed=seed)
    box = Outbox(home.outbox_db)
    try:
        for _ in range(batches):
            session.start_batch()
            for _ in range(actions):
                session.random_action()
            seq = box.reserve_seq()
            now = time.time()
            batch_id, blob = sealer.seal(session.end_batch(), seq=seq, t_start=now)
            box.put(batch_id, seq, now, now + 1, blob)
    finally:
        box.close()
    return session


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # The CLI runs in this process: its vault needs the master key for this test only.
    monkeypatch.setenv("KEYSTEP_MASTER_KEY", master_key())
    return make_home(tmp_path / "home")


def run(home: Any, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["--home", str(home.root), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def rows(out: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for f in sorted((out / "data").glob("*.parquet")):
        found += pq.read_table(f, columns=["episode_id", "action_type", "text"]).to_pylist()
    return found


def test_export_then_rerun(home: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = record(home)
    out = tmp_path / "ds"
    rc, stdout, stderr = run(home, capsys, "export", "--out", str(out))
    assert rc == 0, stderr
    assert f"{len(session.truth)} step(s)" in stdout and "0 failed" in stdout
    assert [r["action_type"] for r in rows(out)] == [t.action_type for t in session.truth]
    rc, stdout, _ = run(home, capsys, "export", "--out", str(out))
    assert rc == 0 and "0 step(s)" in stdout and "0 new batch(es)" in stdout


def test_export_needs_out(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(home, capsys, "export")
    assert rc == 2 and "--out" in err


def test_mine_exports_own_data(
    home: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = record(home, batches=1)
    rc, stdout, stderr = run(home, capsys, "export", "--mine", "--out", str(tmp_path / "mine"))
    assert rc == 0, stderr
    assert f"{len(session.truth)} step(s)" in stdout
    card = (tmp_path / "mine" / "README.md").read_text()
    assert "own data" in card


def test_label_an_episode(home: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(home, batches=1)
    out = tmp_path / "ds"
    assert run(home, capsys, "export", "--out", str(out))[0] == 0
    episode = rows(out)[0]["episode_id"]
    rc, stdout, _ = run(home, capsys, "label", "--episode", episode, "--task", "Pay the bill")
    assert rc == 0 and episode in stdout
    assert json.loads((out / "labels.json").read_text()) == {episode: {"task": "Pay the bill"}}
    rc, stdout, _ = run(home, capsys, "label", "--list")
    assert stdout.strip() == f"{episode}\tPay the bill"
    rc, _, err = run(home, capsys, "label", "--episode", "nope", "--task", "x")
    assert rc == 2 and "not an episode id" in err


def test_rebuild_after_erasure(
    home: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record(home, batches=2)
    out = tmp_path / "ds"
    assert run(home, capsys, "export", "--out", str(out))[0] == 0
    dataset_id = json.loads((out / "keystep-dataset.json").read_text())["dataset_id"]
    rc, _, err = run(home, capsys, "erase", "--yes")
    assert rc == 0, err
    rc, stdout, err = run(home, capsys, "export", "--rebuild", dataset_id)
    assert rc == 0, err
    assert "v2" in stdout and "0 step(s)" in stdout
    assert rows(out) == []
    assert f"supersedes `{dataset_id}`" in (out / "README.md").read_text()


def test_replay_plan_of_each_action_type() -> None:
    from keystep.dataset.replay import commands_for

    cases: list[tuple[dict[str, Any], list[list[str]]]] = [
        (
            {"action_type": "click", "x": 5, "y": 6, "keys": []},
            [["mousemove", "--sync", "5", "6"], ["click", "--repeat", "1", "--delay", "90", "1"]],
        ),
        (
            {"action_type": "right_click", "x": 5, "y": 6, "keys": ["shift"]},
            [
                ["mousemove", "--sync", "5", "6"],
                ["keydown", "shift"],
                ["click", "--repeat", "1", "--delay", "90", "3"],
                ["keyup", "shift"],
            ],
        ),
        (
            {"action_type": "scroll", "x": 1, "y": 2, "dy": -2, "dx": 0},
            [["mousemove", "--sync", "1", "2"], ["click", "--repeat", "2", "--delay", "40", "4"]],
        ),
        ({"action_type": "type", "text": "-rf"}, [["type", "--delay", "25", "--", "-rf"]]),
        (
            {"action_type": "key", "keys": ["pagedown"], "action_code": "x(presses=3)"},
            [["key", "--repeat", "3", "--delay", "40", "Next"]],
        ),
        ({"action_type": "hotkey", "keys": ["ctrl", "shift", "t"]}, [["key", "ctrl+shift+t"]]),
    ]
    for row, expected in cases:
        assert commands_for(row) == expected
