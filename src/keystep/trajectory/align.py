"""Observation alignment: each action gets the screen and focused window from just before it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from keystep.model.events import GAP, SCREEN_FRAME, WINDOW_FOCUS, Event
from keystep.trajectory.actions import Action
from keystep.trajectory.reduce import Issue

# How many recent frames/focus changes/event positions to remember. An action completes at
# most a drag's length after it started, so only the last few frames can be its observation.
FRAME_HISTORY: Final = 256
POSITION_HISTORY: Final = 8192


@dataclass(frozen=True, slots=True)
class Step:
    """An action with what the person saw when they began it."""

    action: Action
    frame: Event | None
    app: str | None
    window_title: str | None
    screen_w: int | None
    screen_h: int | None


class Aligner:
    """Feed every event in recorded order (``observe``), then ``align`` completed actions.

    "Before the action" means before the action's first raw event in recorded order, which
    is how the recorder places a frame (captured just before it delivers the action), and
    does not depend on clocks. Actions without a known position fall back to time.
    """

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self._pos = 0
        self._frames: deque[tuple[int, Event]] = deque(maxlen=FRAME_HISTORY)
        self._focus: deque[tuple[int, Event]] = deque(maxlen=FRAME_HISTORY)
        self._positions: dict[str, int] = {}
        self._order: deque[str] = deque()

    def observe(self, event: Event) -> None:
        self._pos += 1
        if event.kind == SCREEN_FRAME:
            self._frames.append((self._pos, event))
        elif event.kind == WINDOW_FOCUS:
            self._focus.append((self._pos, event))
        elif event.kind == GAP:
            # Nothing seen before a gap describes the screen after it.
            self.interrupt()
        if event.eid:
            self._positions[event.eid] = self._pos
            self._order.append(event.eid)
            if len(self._order) > POSITION_HISTORY:
                self._positions.pop(self._order.popleft(), None)

    def interrupt(self) -> None:
        self._frames.clear()
        self._focus.clear()

    def align(self, action: Action) -> Step:
        pos = self._positions.get(action.sources[0]) if action.sources else None
        frame = _before(self._frames, pos, action.t)
        focus = _before(self._focus, pos, action.t)
        if frame is None:
            first = action.sources[0] if action.sources else ""
            what = f"no screen frame before {action.action_type}"
            self.issues.append(Issue("no_frame", first, what))
        app = title = None
        if focus is not None:
            app_raw, title_raw = focus.data.get("app"), focus.data.get("title")
            app = app_raw if isinstance(app_raw, str) else None
            title = title_raw if isinstance(title_raw, str) else None
        w = h = None
        if frame is not None:
            w_raw, h_raw = frame.data.get("w"), frame.data.get("h")
            w = w_raw if isinstance(w_raw, int) else None
            h = h_raw if isinstance(h_raw, int) else None
        return Step(action, frame, app, title, w, h)


def _before(history: deque[tuple[int, Event]], pos: int | None, t: float) -> Event | None:
    found: Event | None = None
    for entry_pos, event in history:
        if (pos is not None and entry_pos < pos) or (pos is None and event.t <= t):
            found = event
        else:
            break
    return found
