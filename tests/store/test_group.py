"""Group commit: concurrent callers share commits, each gets its own outcome, none returns early."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from keystep.store.group import GroupCommit


def test_waiting_callers_share_one_commit_and_each_gets_its_own_outcome() -> None:
    committed: list[list[int]] = []
    durable: set[int] = set()

    def commit(items: Sequence[int]) -> list[int | BaseException]:
        time.sleep(0.02)  # an fsync
        committed.append(list(items))
        durable.update(items)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = group(i)
        except ValueError as exc:
            results[i] = str(exc)
        assert i in durable  # nothing returns before the commit covering it

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: (f"odd {i}" if i % 2 else i * 10) for i in range(20)}
    assert sorted(i for batch in committed for i in batch) == list(range(20))
    assert len(committed) < 20


def test_a_failed_commit_fails_every_item_of_its_group_and_the_next_one_runs() -> None:
    calls = 0

    def commit(items: Sequence[str]) -> list[str | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        return list(items)

    group: GroupCommit[str, str] = GroupCommit(commit)
    with pytest.raises(OSError, match="disk full"):
        group("a")
    assert group("b") == "b"


def test_callers_queued_behind_a_commit_are_handed_the_next_one_together() -> None:
    """While one commit runs, every caller that arrives queues; when it returns, one of them
    is woken to lead, and commits all of them at once (nobody is left waiting)."""
    entered, release = threading.Event(), threading.Event()
    committed: list[list[int]] = []

    def commit(items: Sequence[int]) -> list[int | BaseException]:
        if not entered.is_set():
            entered.set()
            assert release.wait(10)
        committed.append(list(items))
        return [i + 100 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    results: dict[int, int] = {}

    def call(i: int) -> None:
        results[i] = group(i)

    # Daemons: a caller never woken must fail this test, not hang the run.
    first = threading.Thread(target=call, args=(0,), daemon=True)
    first.start()
    assert entered.wait(10)
    queued = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(1, 11)]
    for t in queued:
        t.start()
    deadline = time.monotonic() + 10
    while len(group._queue) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in [first, *queued]:
        t.join(10)
        assert not t.is_alive(), "a queued caller was never woken"
    assert [sorted(c) for c in committed] == [[0], list(range(1, 11))]
    assert results == {i: i + 100 for i in range(11)}
    assert (group.groups, group.items) == (2, 11)
