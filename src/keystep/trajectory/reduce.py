"""Raw input events → actions: clicks, multi-clicks, drags, scrolls, typing, keys, hotkeys."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from keystep.model.events import (
    GAP,
    KEY_DOWN,
    KEY_UP,
    MODIFIER_KEYS,
    POINTER_DOWN,
    POINTER_MOVE,
    POINTER_SCROLL,
    POINTER_UP,
    SCREEN_FRAME,
    TEXT_TYPED,
    WINDOW_FOCUS,
    Event,
)
from keystep.trajectory.actions import (
    CLICK,
    DOUBLE_CLICK,
    DRAG,
    HOTKEY,
    KEY,
    MIDDLE_CLICK,
    MODIFIER_ORDER,
    RIGHT_CLICK,
    SCROLL,
    TRIPLE_CLICK,
    TYPE,
    Action,
    pyautogui_key,
)

# The extra mouse buttons have no pyautogui button; what they do is browser back/forward,
# which pyautogui has as keys.
EXTRA_BUTTON_KEYS: Final = {"x1": "browserback", "x2": "browserforward"}
MULTI_CLICK: Final = (CLICK, DOUBLE_CLICK, TRIPLE_CLICK)
# A clock that steps back by more than this is a jump, not timer jitter.
CLOCK_TOLERANCE: Final = 0.005


@dataclass(frozen=True, slots=True)
class ReduceConfig:
    """Thresholds; defaults follow common desktop settings (GTK double-click 400 ms, 5 px)."""

    multi_click_interval: float = 0.5
    multi_click_distance: float = 5.0
    drag_threshold: float = 5.0
    scroll_merge_gap: float = 0.6
    scroll_merge_distance: float = 16.0
    type_merge_gap: float = 1.0
    key_repeat_gap: float = 1.0


@dataclass(frozen=True, slots=True)
class Issue:
    """Something in the input that could not be turned into an action; reported, never guessed."""

    code: str
    eid: str
    detail: str = ""


@dataclass(slots=True)
class _Press:
    t: float
    x: int | None
    y: int | None
    eid: str
    mods: tuple[str, ...]
    extends: bool


@dataclass(slots=True)
class _Pending:
    """An action that a following event may still extend (a second click, more scroll steps)."""

    action: Action
    last_t: float
    window_s: float
    sources: list[str] = field(default_factory=list)
    field_id: object = None


def event_end(event: Event) -> float:
    """When an event ends: typing bursts and gaps are stamped at their start and carry t_end."""
    if event.kind in (TEXT_TYPED, GAP):
        t_end = event.data.get("t_end")
        if isinstance(t_end, int | float) and not isinstance(t_end, bool) and t_end >= event.t:
            return float(t_end)
    return event.t


def _xy(event: Event) -> tuple[int | None, int | None]:
    x, y = event.data.get("x"), event.data.get("y")
    if isinstance(x, int | float) and isinstance(y, int | float):
        return round(x), round(y)
    return None, None


def _dist(x0: int | None, y0: int | None, x1: int | None, y1: int | None) -> float:
    if x0 is None or y0 is None or x1 is None or y1 is None:
        return 0.0
    return math.hypot(x1 - x0, y1 - y0)


def _sign(v: int | None) -> int:
    return 0 if not v else (1 if v > 0 else -1)


class Reducer:
    """Incremental reducer: feed events in recorded order, get actions as they complete.

    Incremental so that an action may span two batches (a press at the end of one, the
    release in the next) while memory stays bounded.
    """

    def __init__(self, config: ReduceConfig | None = None) -> None:
        self.config = config or ReduceConfig()
        self.issues: list[Issue] = []
        self._out: list[Action] = []
        self._pending: _Pending | None = None
        self._pressed: dict[str, _Press] = {}
        self._mods: dict[str, None] = {}  # insertion-ordered set of held modifiers (raw names)
        self._lone_cmd: str | None = None
        self._pointer: tuple[int | None, int | None] = (None, None)
        self._last_t: float | None = None

    # -- public -----------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Action]:
        """Take one event; return the actions it completed (possibly none)."""
        end = event_end(event)
        if self._last_t is not None and end < self._last_t - CLOCK_TOLERANCE:
            self.issues.append(
                Issue("clock_backwards", event.eid, f"{self._last_t - end:.3f}s back")
            )
            self._flush_pending()
            self._last_t = end  # the clock jumped: measure from its new reading
        self._last_t = end if self._last_t is None else max(self._last_t, end)
        pending = self._pending
        if pending is not None and event.t - pending.last_t > pending.window_s:
            self._flush_pending()
        handler = self._HANDLERS.get(event.kind)
        if handler is None:
            self.issues.append(Issue("unknown_kind", event.eid, event.kind))
        else:
            handler(self, event)
        out, self._out = self._out, []
        return out

    def feed_all(self, events: Iterable[Event]) -> list[Action]:
        out: list[Action] = []
        for event in events:
            out.extend(self.feed(event))
        return out

    def flush(self) -> list[Action]:
        """Complete whatever is pending (end of input). Unreleased buttons are reported."""
        self._break("end of input")
        out, self._out = self._out, []
        return out

    def interrupt(self, eid: str, reason: str) -> list[Action]:
        """Nothing was recorded for a while (gap, missing batch): no action spans it."""
        self._break(reason, eid)
        out, self._out = self._out, []
        return out

    # -- helpers ----------------------------------------------------------------------------

    def _break(self, reason: str, eid: str = "") -> None:
        self._flush_pending()
        for button, press in self._pressed.items():
            self.issues.append(
                Issue("press_without_release", press.eid, f"{button} button; {reason}")
            )
        self._pressed.clear()
        self._mods.clear()
        self._lone_cmd = None
        self._pointer = (None, None)

    def _flush_pending(self) -> None:
        if self._pending is not None:
            p = self._pending
            self._out.append(replace(p.action, sources=tuple(p.sources)))
            self._pending = None

    def _emit(self, action: Action) -> None:
        self._flush_pending()
        self._out.append(action)

    def _held_mods(self) -> tuple[str, ...]:
        names = {pyautogui_key(m) for m in self._mods}
        return tuple(m for m in MODIFIER_ORDER if m in names)

    # -- handlers ---------------------------------------------------------------------------

    def _on_move(self, event: Event) -> None:
        x, y = _xy(event)
        if x is not None:
            self._pointer = (x, y)

    def _on_down(self, event: Event) -> None:
        self._lone_cmd = None
        button = str(event.data.get("button", "left"))
        x, y = _xy(event)
        if x is None:
            x, y = self._pointer
        else:
            self._pointer = (x, y)
        if button in self._pressed:
            # A second press of a held button means we missed its release.
            old = self._pressed.pop(button)
            self.issues.append(Issue("press_without_release", old.eid, f"{button} pressed again"))
        p = self._pending
        cfg = self.config
        extends = (
            button == "left"
            and p is not None
            and p.action.action_type in (CLICK, DOUBLE_CLICK)
            and p.action.button == "left"
            and event.t - p.last_t <= cfg.multi_click_interval
            and _dist(p.action.x, p.action.y, x, y) <= cfg.multi_click_distance
            and p.action.keys == self._held_mods()
        )
        if not extends:
            self._flush_pending()
        self._pressed[button] = _Press(event.t, x, y, event.eid, self._held_mods(), extends)

    def _on_up(self, event: Event) -> None:
        button = str(event.data.get("button", "left"))
        press = self._pressed.pop(button, None)
        if press is None:
            self.issues.append(Issue("release_without_press", event.eid, f"{button} button"))
            return
        x, y = _xy(event)
        if x is None:
            x, y = self._pointer
        else:
            self._pointer = (x, y)
        if x is None:
            x, y = press.x, press.y
        if press.x is None or press.y is None:
            self.issues.append(Issue("no_position", press.eid, "press without coordinates"))
            return
        sources = [press.eid, event.eid]
        cfg = self.config
        if _dist(press.x, press.y, x, y) > cfg.drag_threshold:
            self._emit(
                Action(
                    DRAG,
                    press.t,
                    x=press.x,
                    y=press.y,
                    to_x=x,
                    to_y=y,
                    button=button,
                    keys=press.mods,
                    t_end=event.t,
                    sources=tuple(sources),
                )
            )
            return
        if button in EXTRA_BUTTON_KEYS:
            key = EXTRA_BUTTON_KEYS[button]
            self._emit(Action(KEY, press.t, keys=(key,), t_end=event.t, sources=tuple(sources)))
            return
        if button != "left":
            kind = {"right": RIGHT_CLICK, "middle": MIDDLE_CLICK}.get(button, CLICK)
            self._emit(
                Action(
                    kind,
                    press.t,
                    x=press.x,
                    y=press.y,
                    button=button,
                    keys=press.mods,
                    t_end=event.t,
                    sources=tuple(sources),
                )
            )
            return
        p = self._pending
        if press.extends and p is not None:
            level = MULTI_CLICK.index(p.action.action_type) + 1
            p.action = replace(p.action, action_type=MULTI_CLICK[level], t_end=event.t)
            p.last_t = press.t
            p.sources.extend(sources)
            if level == len(MULTI_CLICK) - 1:
                self._flush_pending()
            return
        self._flush_pending()
        self._pending = _Pending(
            Action(
                CLICK,
                press.t,
                x=press.x,
                y=press.y,
                button="left",
                keys=press.mods,
                t_end=event.t,
            ),
            last_t=press.t,
            window_s=cfg.multi_click_interval,
            sources=sources,
        )

    def _on_scroll(self, event: Event) -> None:
        self._lone_cmd = None
        x, y = _xy(event)
        if x is None:
            x, y = self._pointer
        else:
            self._pointer = (x, y)
        dx, dy = int(event.data.get("dx", 0) or 0), int(event.data.get("dy", 0) or 0)
        if dx == 0 and dy == 0:
            return
        cfg = self.config
        p = self._pending
        if (
            p is not None
            and p.action.action_type == SCROLL
            and (_sign(p.action.dx), _sign(p.action.dy)) == (_sign(dx), _sign(dy))
            and _dist(p.action.x, p.action.y, x, y) <= cfg.scroll_merge_distance
        ):
            p.action = replace(
                p.action,
                dx=(p.action.dx or 0) + dx,
                dy=(p.action.dy or 0) + dy,
                t_end=event.t,
            )
            p.last_t = event.t
            p.sources.append(event.eid)
            return
        if x is None or y is None:
            self.issues.append(Issue("no_position", event.eid, "scroll without coordinates"))
            return
        self._flush_pending()
        self._pending = _Pending(
            Action(SCROLL, event.t, x=x, y=y, dx=dx, dy=dy, t_end=event.t),
            last_t=event.t,
            window_s=cfg.scroll_merge_gap,
            sources=[event.eid],
        )

    def _on_key_down(self, event: Event) -> None:
        raw = event.data.get("key")
        if not isinstance(raw, str) or not raw:
            self.issues.append(Issue("no_key", event.eid, "key.down without a key name"))
            return
        repeat = bool(event.data.get("repeat", False))
        if raw in MODIFIER_KEYS:
            if raw in self._mods:
                return  # a held modifier auto-repeats; it changes nothing
            self._lone_cmd = raw if (raw.startswith("cmd") and not self._mods) else None
            self._mods[raw] = None
            return
        self._lone_cmd = None
        mods = self._held_mods()
        key = pyautogui_key(raw)
        kind = HOTKEY if mods else KEY
        keys = (*mods, key)
        p = self._pending
        if repeat and p is not None and p.action.action_type == kind and p.action.keys == keys:
            p.action = replace(p.action, presses=p.action.presses + 1, t_end=event.t)
            p.last_t = event.t
            p.sources.append(event.eid)
            return
        self._flush_pending()
        self._pending = _Pending(
            Action(kind, event.t, keys=keys, t_end=event.t),
            last_t=event.t,
            window_s=self.config.key_repeat_gap,
            sources=[event.eid],
            field_id=raw,
        )

    def _on_key_up(self, event: Event) -> None:
        raw = event.data.get("key")
        if not isinstance(raw, str):
            return
        if raw in MODIFIER_KEYS:
            if raw not in self._mods:
                self.issues.append(Issue("release_without_press", event.eid, f"key {raw}"))
                return
            del self._mods[raw]
            if self._lone_cmd == raw:
                self._lone_cmd = None
                self._emit(Action(KEY, event.t, keys=("win",), t_end=event.t, sources=(event.eid,)))
            return
        p = self._pending
        if p is not None and p.field_id == raw and p.action.action_type in (KEY, HOTKEY):
            # No repeat can follow a release: the key action is complete.
            p.sources.append(event.eid)
            self._flush_pending()

    def _on_text(self, event: Event) -> None:
        self._lone_cmd = None
        text = event.data.get("text")
        if not isinstance(text, str) or not text:
            return
        t_end_raw = event.data.get("t_end", event.t)
        t_end = float(t_end_raw) if isinstance(t_end_raw, int | float) else event.t
        window = event.data.get("window")
        window_s = None if window is None else str(window)
        where = (window_s, event.data.get("field"))
        p = self._pending
        if (
            p is not None
            and p.action.action_type == TYPE
            and p.field_id == where
            and event.t - (p.action.t_end or p.action.t) <= self.config.type_merge_gap
        ):
            p.action = replace(p.action, text=(p.action.text or "") + text, t_end=t_end)
            p.last_t = t_end
            p.sources.append(event.eid)
            return
        self._flush_pending()
        self._pending = _Pending(
            Action(TYPE, event.t, text=text, t_end=t_end, window=window_s),
            last_t=t_end,
            window_s=self.config.type_merge_gap,
            sources=[event.eid],
            field_id=where,
        )

    def _on_gap(self, event: Event) -> None:
        self._break("gap", event.eid)

    def _on_frame(self, event: Event) -> None:
        # The recorder captures a frame before each action it sees; typing after a new
        # frame is a new step (same window or not), with that frame as its observation.
        p = self._pending
        if p is not None and p.action.action_type == TYPE:
            self._flush_pending()

    def _ignore(self, event: Event) -> None:
        return None

    _HANDLERS: Final = {
        POINTER_MOVE: _on_move,
        POINTER_DOWN: _on_down,
        POINTER_UP: _on_up,
        POINTER_SCROLL: _on_scroll,
        KEY_DOWN: _on_key_down,
        KEY_UP: _on_key_up,
        TEXT_TYPED: _on_text,
        GAP: _on_gap,
        SCREEN_FRAME: _on_frame,
        WINDOW_FOCUS: _ignore,
    }


def reduce_events(
    events: Iterable[Event], config: ReduceConfig | None = None
) -> tuple[list[Action], list[Issue]]:
    """Reduce a whole event sequence at once (tests, small inputs)."""
    reducer = Reducer(config)
    actions = reducer.feed_all(events)
    actions.extend(reducer.flush())
    return actions, reducer.issues
