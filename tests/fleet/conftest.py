"""Fixtures: a PostgreSQL database of this test module's own, and collector processes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "web"))

from service_fixtures import collectors, module_dir, pg

__all__ = ["collectors", "module_dir", "pg"]
