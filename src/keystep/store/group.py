"""Group commit: threads that arrive while a commit is in flight share the next one.

Each caller queues its item and waits. Whenever no commit is running, one waiting caller
becomes the leader, takes everything queued, and runs the commit function once for all of
it (one fsync, one transaction) while newcomers queue for the next round. Waiters sleep on a
condition, not on the leader's lock, so each is released the moment its own group is
durable. No call returns before the commit that covers its item has returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Slot(Generic[T]):
    item: T
    done: bool = False
    outcome: object = None


class GroupCommit(Generic[T, R]):
    """``commit(items)`` returns one outcome per item, in order (a result or an exception);
    if it raises, every item of the group gets that exception."""

    def __init__(self, commit: Callable[[Sequence[T]], Sequence[R | BaseException]]) -> None:
        self._commit = commit
        self._cond = threading.Condition()
        self._queue: list[_Slot[T]] = []
        self._busy = False
        self.groups = 0  # how many commits ran, and for how many items (for benches)
        self.items = 0

    def __call__(self, item: T) -> R:
        slot = _Slot(item)
        with self._cond:
            self._queue.append(slot)
            while not slot.done and self._busy:
                self._cond.wait()
            if slot.done:
                return self._result(slot)
            self._busy = True
            group, self._queue = self._queue, []
        try:
            outcomes: Sequence[object] = self._commit([s.item for s in group])
            if len(outcomes) != len(group):
                raise RuntimeError("group commit returned the wrong number of outcomes")
        except BaseException as exc:
            outcomes = [exc] * len(group)
        with self._cond:
            for s, o in zip(group, outcomes, strict=True):
                s.outcome, s.done = o, True
            self.groups += 1
            self.items += len(group)
            self._busy = False
            self._cond.notify_all()
        return self._result(slot)

    @staticmethod
    def _result(slot: _Slot[T]) -> R:
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return cast(R, slot.outcome)
