"""Retention periods and header hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from keystep.model.periods import hour_of, next_period, period_of


@pytest.mark.parametrize(
    ("period", "following"),
    [("2026-11", "2026-12"), ("2026-12", "2027-01"), ("1999-01", "1999-02")],
)
def test_next_period(period: str, following: str) -> None:
    assert next_period(period) == following


def test_period_is_the_utc_month_whatever_the_input() -> None:
    t = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 30 Nov 22:30 UTC
    assert period_of(t) == "2026-11"
    assert period_of(t.timestamp()) == "2026-11"
    assert period_of(datetime(2026, 12, 1, tzinfo=UTC)) == "2026-12"


def test_hour_carries_no_minutes() -> None:
    assert (
        hour_of(datetime(2026, 11, 22, 7, 59, 59, tzinfo=UTC).timestamp()) == "2026-11-22T07:00:00Z"
    )
