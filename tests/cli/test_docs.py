"""The documented command line exists: every command of DESIGN.md's contract parses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from keystep.cli.main import build_parser

DESIGN = Path(__file__).resolve().parents[3] / "shared" / "DESIGN.md"

CONTRACT = [
    ["init", "--home", "/tmp/h", "--manifest", "m.yaml"],
    ["consent", "show"],
    ["consent", "accept", "--yes"],
    ["consent", "withdraw"],
    ["record", "--display", ":1", "--duration", "5"],
    ["pause", "--for", "90s"],
    ["pause"],
    ["resume"],
    ["status", "--json"],
    ["forget", "--last", "10m"],
    ["export", "--out", "d", "--format", "webdataset"],
    ["audit", "verify"],
    ["audit", "exposure"],
    ["audit", "log", "--contributor", "p_x"],
    ["erase", "--contributor", "p_x"],
    [
        "serve",
        "--db",
        "postgresql://x",
        "--blobs",
        "s3://b/p",
        "--host",
        "127.0.0.1",
        "--port",
        "8420",
    ],
    ["agent", "--server", "https://collector"],
    ["fleet", "halt"],
    ["fleet", "resume"],
    ["replay", "--episode", "e1", "--display", ":3"],
    ["label"],
    ["maintain"],
    ["eval", "redaction"],
]


@pytest.mark.parametrize("argv", CONTRACT, ids=lambda a: " ".join(a[:2]))
def test_contract_command_parses(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.handler


@pytest.mark.parametrize("where", ["before", "after"])
def test_home_is_accepted_before_or_after_the_subcommand(where: str) -> None:
    argv = ["--home", "/tmp/h1", "status"] if where == "before" else ["status", "--home", "/tmp/h1"]
    assert build_parser().parse_args(argv).home == "/tmp/h1"


def test_every_command_in_design_md_is_covered() -> None:
    if not DESIGN.exists():
        pytest.skip("DESIGN.md is not beside the project")
    block = DESIGN.read_text().split("## Command line", 1)[1]
    commands = set(re.findall(r"^keystep (\w+)", block, flags=re.M))
    commands |= set(re.findall(r"\| (\w+)(?= \||$)", block))
    covered = {a[0] for a in CONTRACT}
    assert commands - {"ID"} <= covered | {"label", "maintain", "eval"}


def test_bad_usage_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "keystep.cli.main", "pause", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "error" in proc.stderr.splitlines()[-1]


def test_every_test_named_in_the_promises_table_exists() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "promises.md").read_text("utf-8")
    # `tests/x.py::name` names a test; a bare `::name` names one in the file cited before it.
    refs = re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", text)
    checked = 0
    path = ""
    for cited, name in refs:
        path = cited or path
        if not path:
            continue
        source = (root / path).read_text("utf-8")
        if name:
            assert f"def {name}(" in source, f"{path}::{name} is named in promises.md but missing"
            checked += 1
    assert checked >= 20
