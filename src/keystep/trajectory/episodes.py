"""Episodes: steps split at gaps, idle time, manifest changes and (optionally) app switches."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from keystep.trajectory.align import Step
from keystep.trajectory.reduce import CLOCK_TOLERANCE

DEFAULT_IDLE_MINUTES: Final = 5.0


def default_episode_id(first_eid: str) -> str:
    """An id derived from the episode's first raw event (datasets pass a keyed one instead)."""
    return "ep-" + hashlib.sha256(first_eid.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Placed:
    """A step with its place: which episode, and its index within it."""

    step: Step
    episode_id: str
    index: int


class EpisodeSplitter:
    """Assigns consecutive steps of one device's recording to episodes, incrementally.

    The caller reports boundaries it sees (a gap event, a batch missing from the sequence, a
    manifest change) with ``boundary``; idle time, clock jumps and app switches are
    detected here.
    """

    def __init__(
        self,
        *,
        idle_minutes: float = DEFAULT_IDLE_MINUTES,
        split_on_app: bool = False,
        make_id: Callable[[str], str] = default_episode_id,
    ) -> None:
        self.idle_s = idle_minutes * 60.0
        self.split_on_app = split_on_app
        self.make_id = make_id
        self.reasons: dict[str, int] = {}
        self._episode: str | None = None
        self._index = 0
        self._last_t: float | None = None
        self._last_app: str | None = None

    @property
    def current(self) -> str | None:
        return self._episode

    def boundary(self, reason: str) -> None:
        if self._episode is not None:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self._episode = None

    def place(self, step: Step) -> Placed:
        a = step.action
        if self._episode is not None and self._last_t is not None:
            if a.t < self._last_t - CLOCK_TOLERANCE:
                self.boundary("clock_backwards")
            elif a.t - self._last_t > self.idle_s:
                self.boundary("idle")
            elif self.split_on_app and step.app is not None and step.app != self._last_app:
                self.boundary("app_switch")
        if self._episode is None:
            first = a.sources[0] if a.sources else f"{a.t!r}"
            self._episode = self.make_id(first)
            self._index = 0
        placed = Placed(step, self._episode, self._index)
        self._index += 1
        self._last_t = a.t_end if a.t_end is not None else a.t
        if step.app is not None:
            self._last_app = step.app
        return placed
