"""Retention periods (calendar months, UTC) and the hour a batch header may carry."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def period_of(t: float | datetime) -> str:
    """The retention period ``YYYY-MM`` that ``t`` (unix seconds or a datetime) falls in."""
    if isinstance(t, datetime):
        return t.astimezone(UTC).strftime("%Y-%m")
    return time.strftime("%Y-%m", time.gmtime(t))


def next_period(period: str) -> str:
    year, month = (int(p) for p in period.split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def hour_of(t: float) -> str:
    """Start time rounded down to the hour: all a header says about when (DESIGN.md)."""
    return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(t))
