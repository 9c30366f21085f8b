"""The folder watch: told of every change to the files it names, silent otherwise, and
"changed" for ever once it can no longer vouch for what it sees."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from keystep.capture.watch import FolderWatch

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="inotify")


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return a, b


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.mark.parametrize(
    "change",
    [
        lambda a, b: (a / "pause.json").write_text("{}"),  # created in place
        lambda a, b: _replace(b / "consent.json", "{}"),  # replaced by rename
        lambda a, b: (a / "pause.json").unlink(),  # removed
        lambda a, b: os.utime(b / "consent.json"),  # touched
    ],
    ids=["write", "rename", "delete", "touch"],
)
def test_a_named_file_changing_is_seen_once(folders: tuple[Path, Path], change) -> None:  # type: ignore[no-untyped-def]
    a, b = folders
    (a / "pause.json").write_text("")
    (b / "consent.json").write_text("")
    watch = FolderWatch([a, b], ["pause.json", "consent.json"])
    assert watch.fileno() is not None
    assert watch.changed() is False
    change(a, b)
    assert watch.changed() is True
    assert watch.changed() is False


def test_other_files_beside_them_are_not_a_change(folders: tuple[Path, Path]) -> None:
    a, _ = folders
    watch = FolderWatch([a], ["pause.json"])
    _replace(a / "recorder.json", "{}")  # the recorder's own status file
    (a / "notes.txt").write_text("x")
    assert watch.changed() is False


def test_a_folder_that_goes_away_makes_it_say_changed_for_ever(
    folders: tuple[Path, Path],
) -> None:
    a, b = folders
    watch = FolderWatch([a, b], ["pause.json"])
    shutil.rmtree(b)
    assert watch.changed() is True
    assert watch.fileno() is None  # nothing left to wait on: the caller polls
    assert watch.changed() is True


def test_a_missing_folder_means_no_watch_at_all(tmp_path: Path) -> None:
    watch = FolderWatch([tmp_path / "absent"], ["pause.json"])
    assert watch.fileno() is None
    assert watch.changed() is True and watch.changed() is True
