"""Typed-text assembly: printable characters become ``text.typed`` runs, nothing else does.

Per the format (DESIGN.md), a printable key pressed without ctrl/alt/super leaves no key
event at all (not even its timing): its character joins the current run for the focused
window. Other keys become ``key.down``/``key.up`` with their name. A modifier is emitted
only once it modifies such a key (so the shift of a capital letter leaves no trace).
Presses and releases pair by hardware keycode, since shift may change the character
between them; a press of a key already down is an auto-repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from keystep.capture.sources.base import KEY_PRESS, RawInput
from keystep.model.events import (
    COMMAND_MODIFIERS,
    KEY_DOWN,
    KEY_UP,
    MODIFIER_KEYS,
    TEXT_TYPED,
    Event,
)

IDLE_S: Final = 2.0
MAX_CHARS: Final = 2000
# What a field probe said at the run's first key, carried on the run's event until the
# recorder hands it to redaction; never a wire field (the batcher keeps only FIELDS).
PASSWORD_RUN: Final = "_password_field"


@dataclass(slots=True)
class _Down:
    name: str | None  # None: a text key, released silently
    modifier: bool = False
    emitted: bool = False
    t: float = 0.0


@dataclass(slots=True)
class Burst:
    t0: float
    t_last: float
    window: int
    chars: list[str] = field(default_factory=list)
    password: bool | None = None  # the field probe's verdict at the first key


class TypingAssembler:
    def __init__(self, *, idle_s: float = IDLE_S, max_chars: int = MAX_CHARS) -> None:
        self.idle_s = idle_s
        self.max_chars = max_chars
        self.burst: Burst | None = None
        self._down: dict[int, _Down] = {}

    def _command_held(self) -> bool:
        return any(d.modifier and d.name in COMMAND_MODIFIERS for d in self._down.values())

    def is_text(self, raw: RawInput) -> bool:
        return raw.kind == KEY_PRESS and raw.char is not None and not self._command_held()

    def starts_burst(self, raw: RawInput, window: int) -> bool:
        """Whether this press opens a new typing run (the caller checks focus, keeps a frame)."""
        if not self.is_text(raw) or raw.keycode in self._down:
            return False
        return self.burst is None or self.burst.window != window

    def starts_key_action(self, raw: RawInput) -> bool:
        """Whether this press becomes a ``key`` or ``hotkey`` step: a fresh press of a key
        that is neither a modifier nor typing (the caller checks focus, keeps a frame)."""
        return (
            raw.kind == KEY_PRESS
            and raw.name not in MODIFIER_KEYS
            and not self.is_text(raw)
            and raw.keycode not in self._down
        )

    def press(self, raw: RawInput, window: int, *, password: bool | None = None) -> list[Event]:
        out: list[Event] = []
        repeat = raw.keycode in self._down
        if raw.name in MODIFIER_KEYS:
            if not repeat:
                self._down[raw.keycode] = _Down(raw.name, modifier=True, t=raw.t)
            return out
        if self.is_text(raw):
            assert raw.char is not None
            if self.burst is not None and (
                self.burst.window != window or len(self.burst.chars) >= self.max_chars
            ):
                if self.burst.window == window and password is None:
                    password = self.burst.password  # a run split for length keeps its verdict
                out += self.flush()
            if self.burst is None:
                self.burst = Burst(raw.t, raw.t, window, password=password)
            self.burst.chars.append(raw.char)
            self.burst.t_last = raw.t
            if not repeat:
                self._down[raw.keycode] = _Down(None, t=raw.t)
            return out
        out += self.flush()
        name = raw.name or (raw.base or raw.char or "").lower() or f"keycode_{raw.keycode}"
        for d in self._down.values():
            if d.modifier and not d.emitted:
                d.emitted = True
                out.append(Event(d.t, KEY_DOWN, {"key": d.name}))
        data: dict[str, object] = {"key": name}
        if repeat:
            data["repeat"] = True
        out.append(Event(raw.t, KEY_DOWN, data))
        if not repeat:
            self._down[raw.keycode] = _Down(name, emitted=True, t=raw.t)
        return out

    def release(self, raw: RawInput) -> list[Event]:
        d = self._down.pop(raw.keycode, None)
        if d is None or not d.emitted or d.name is None:
            return []
        return [Event(raw.t, KEY_UP, {"key": d.name})]

    def flush(self) -> list[Event]:
        """Close the current run (focus change, pointer action, special key, batch end)."""
        b, self.burst = self.burst, None
        if b is None or not b.chars:
            return []
        data: dict[str, object] = {"text": "".join(b.chars), "t_end": b.t_last, "window": b.window}
        if b.password is not None:
            data[PASSWORD_RUN] = b.password
        return [Event(b.t0, TEXT_TYPED, data)]

    def idle(self, now: float) -> list[Event]:
        if self.burst is not None and now - self.burst.t_last >= self.idle_s:
            return self.flush()
        return []

    def drop(self) -> None:
        """Discard the run and forget held keys (pause, exclusion, forget)."""
        self.burst = None
        self._down.clear()
