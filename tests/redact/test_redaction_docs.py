"""docs/redaction.md publishes what the code does: the platform table, version, settings."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from keystep.redact import PLATFORM_SUPPORT, REDACTION_VERSION, RedactionSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "redaction.md"


def test_the_platform_table_is_published() -> None:
    text = DOC.read_text()
    for row in PLATFORM_SUPPORT:
        line = f"| {row.platform} | {row.field_role} | {row.keystep_uses} | {row.fallback} |"
        assert line in text, row.platform


def test_version_and_every_setting_are_documented() -> None:
    text = DOC.read_text()
    assert f"**{REDACTION_VERSION}**" in text
    for f in fields(RedactionSettings):
        assert f"| `{f.name}` |" in text, f.name


def test_the_documented_command_exists() -> None:
    from keystep.cli.main import build_parser

    args = build_parser().parse_args(
        ["eval", "redaction", "--cases", "1", "--screens", "1", "--seed", "2", "--json"]
    )
    assert (args.cases, args.screens, args.seed, args.json) == (1, 1, 2, True)
