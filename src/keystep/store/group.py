"""Group commit: threads that arrive while a commit is in flight share the next one.

Each caller queues its item and waits. Whenever no commit is running, one waiting caller
becomes the leader, takes everything queued, and runs the commit function once for all of
it (one fsync, one transaction) while newcomers queue for the next round. No call returns
before the commit that covers its item has returned.

Each waiter sleeps on a lock of its own and is woken exactly once: when its group is
durable, or to lead the next group. (Waiting on one shared condition woke every queued
thread at every commit, most of them only to sleep again — a cost, under the interpreter
lock, that grew with the number of waiters.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T]):
    __slots__ = ("done", "item", "outcome", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.outcome: object = None
        self.wake = threading.Lock()
        self.wake.acquire()  # released once: the group is done, or this slot leads next


class GroupCommit(Generic[T, R]):
    """``commit(items)`` returns one outcome per item, in order (a result or an exception);
    if it raises, every item of the group gets that exception."""

    def __init__(self, commit: Callable[[Sequence[T]], Sequence[R | BaseException]]) -> None:
        self._commit = commit
        self._mutex = threading.Lock()
        self._queue: list[_Slot[T]] = []
        self._busy = False
        self.groups = 0  # how many commits ran, and for how many items (for benches)
        self.items = 0

    def __call__(self, item: T) -> R:
        slot = _Slot(item)
        with self._mutex:
            self._queue.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.wake.acquire()
            if slot.done:
                return self._result(slot)
            # Woken undone: the previous leader handed this slot the next group.
        with self._mutex:
            group, self._queue = self._queue, []
        try:
            outcomes: Sequence[object] = self._commit([s.item for s in group])
            if len(outcomes) != len(group):
                raise RuntimeError("group commit returned the wrong number of outcomes")
        except BaseException as exc:
            outcomes = [exc] * len(group)
        for s, o in zip(group, outcomes, strict=True):
            s.outcome, s.done = o, True
        with self._mutex:
            self.groups += 1
            self.items += len(group)
            successor = self._queue[0] if self._queue else None
            self._busy = successor is not None
        if successor is not None:
            successor.wake.release()  # the next group starts before this one is answered
        for s in group:
            if s is not slot:
                s.wake.release()
        return self._result(slot)

    @staticmethod
    def _result(slot: _Slot[T]) -> R:
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return cast(R, slot.outcome)
