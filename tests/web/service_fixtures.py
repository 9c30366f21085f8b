"""Fixtures shared by the service tests (web, agent, fleet): a PostgreSQL database of the
test module's own and collector processes on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import CollectorProc

from keystep.store.pg_admin import TempDatabase, temporary_database


@pytest.fixture(scope="module")
def pg() -> Iterator[TempDatabase]:
    """Created and dropped per module; the collector connects as the non-owner app role."""
    with temporary_database() as db:
        yield db


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("collector")


@pytest.fixture
def collectors(pg: TempDatabase, tmp_path: Path) -> Iterator[Callable[..., CollectorProc]]:
    """Start collectors on the module's database; all are stopped afterwards."""
    started: list[CollectorProc] = []

    def start(name: str = "c1", **kw: object) -> CollectorProc:
        kw.setdefault("state_dir", tmp_path / "state")
        c = CollectorProc(db=pg.app_url, root=tmp_path, name=name, **kw)  # type: ignore[arg-type]
        started.append(c)
        return c.start()

    yield start
    for c in started:
        c.stop()
