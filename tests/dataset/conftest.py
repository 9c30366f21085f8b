"""Fixtures: a real local vault with a granted builder, and an enrolled device."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synth import Device, grant_builder, open_vault

from keystep.vault.local import LocalVault


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[LocalVault]:
    v = open_vault(tmp_path / "vault")
    grant_builder(v)
    yield v
    v.close()


@pytest.fixture
def device(vault: LocalVault) -> Device:
    return Device(vault, "alice", "dev-alice")
