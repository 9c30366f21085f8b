"""The package layout is the data flow: imports point down, and the agent stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "keystep"

# CONVENTIONS.md 1: a package may import its own level or below, never above.
LEVELS = {
    "model": 0,
    "home": 1,
    "sqlite_wal": 1,  # opening SQLite in WAL mode, for the outbox and the store
    "redact": 1,
    "seal": 1,
    "trajectory": 1,
    "capture": 2,
    "outbox": 2,
    "store": 2,
    "policy": 2,
    "vault": 2,
    "audit": 2,
    "exposure": 3,
    "collector": 3,
    "dataset": 3,
    "agent": 4,
    "cli": 5,
    "web": 5,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(n, m) for n, m in found if m.startswith("keystep.")]


def _package(rel: Path) -> str:
    return rel.parts[0].removesuffix(".py")


def test_imports_point_down() -> None:
    wrong = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("__init__.py", "__main__.py"):
            continue
        mine = LEVELS.get(_package(rel))
        assert mine is not None, f"{rel}: package not placed in a layer"
        for line, module in _imports(path):
            target = module.split(".")[1]
            if target in LEVELS and LEVELS[target] > mine:
                wrong.append(f"{rel}:{line} imports {module}")
    assert not wrong, "imports pointing up:\n" + "\n".join(wrong)


AGENT_MODULES = [
    "keystep.capture.recorder",
    "keystep.cli.recording",
    "keystep.outbox",
    "keystep.seal.envelope",
    "keystep.vault.local",
]
HEAVY = [
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "ray",
    "pyarrow",
    "datasets",
    "boto3",
]


@pytest.mark.parametrize("module", AGENT_MODULES)
def test_agent_does_not_import_server_or_dataset_stacks(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"


def test_building_the_cli_parser_stays_light() -> None:
    # Every command, `keystep record` included, builds the whole parser first.
    code = (
        "import sys\n"
        "from keystep.cli.main import build_parser\n"
        "build_parser()\n"
        f"heavy = {[*HEAVY, 'rich', 'presidio_analyzer', 'spacy']!r}\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the parser pulls in {out.stdout.strip()}"
