"""The event: what the recorder emits and what a sealed batch carries (DESIGN.md, formats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

EVENT_FORMAT_VERSION: Final = 1

POINTER_MOVE: Final = "pointer.move"
POINTER_DOWN: Final = "pointer.down"
POINTER_UP: Final = "pointer.up"
POINTER_SCROLL: Final = "pointer.scroll"
KEY_DOWN: Final = "key.down"
KEY_UP: Final = "key.up"
TEXT_TYPED: Final = "text.typed"
SCREEN_FRAME: Final = "screen.frame"
WINDOW_FOCUS: Final = "window.focus"
GAP: Final = "gap"

KINDS: Final[tuple[str, ...]] = (
    POINTER_MOVE,
    POINTER_DOWN,
    POINTER_UP,
    POINTER_SCROLL,
    KEY_DOWN,
    KEY_UP,
    TEXT_TYPED,
    SCREEN_FRAME,
    WINDOW_FOCUS,
    GAP,
)

# Every field a kind can ever carry. A manifest declares a subset per kind; the agent
# serialises only that subset and every reader rejects anything outside it.
#   x, y        virtual-screen pixels (all monitors)
#   button      left | right | middle | x1 | x2
#   dx, dy      scroll steps (positive dy = down, positive dx = right)
#   key         key name, only for non-printable keys or keys pressed with ctrl/alt/super
#   repeat      true when the key event is an auto-repeat
#   text        the printable characters of a typing burst, redacted before sealing
#   t_end       end of a typing burst or of a gap
#   window      the recorder's id of the focused window (stable within a recording)
#   field       the focused field within the window where the platform tells (else absent)
#   frame       index of the image in the batch's frame table
#   rect        [x, y, w, h] of the region the image covers (the full screen for a keyframe)
#   base        index of the frame this one patches (absent for a keyframe)
#   w, h        full virtual-screen size of the frame
#   app, title, pid, geometry   the focused window: class, title, process id, [x, y, w, h]
#   redactions  how many spans or boxes redaction replaced (a count, never the content)
FIELDS: Final[dict[str, tuple[str, ...]]] = {
    POINTER_MOVE: ("x", "y"),
    POINTER_DOWN: ("x", "y", "button"),
    POINTER_UP: ("x", "y", "button"),
    POINTER_SCROLL: ("x", "y", "dx", "dy"),
    KEY_DOWN: ("key", "repeat"),
    KEY_UP: ("key",),
    TEXT_TYPED: ("text", "t_end", "window", "field", "redactions"),
    SCREEN_FRAME: ("frame", "rect", "base", "w", "h", "window", "redactions"),
    WINDOW_FOCUS: ("window", "app", "title", "pid", "geometry", "redactions"),
    GAP: ("t_end",),
}

BUTTONS: Final = ("left", "right", "middle", "x1", "x2")
MODIFIER_KEYS: Final = frozenset(
    {"shift", "shift_r", "ctrl", "ctrl_r", "alt", "alt_r", "alt_gr", "cmd", "cmd_r"}
)
# Modifiers that turn a printable key into a command (a hotkey) rather than text.
COMMAND_MODIFIERS: Final = frozenset({"ctrl", "ctrl_r", "alt", "alt_r", "cmd", "cmd_r"})


class EventError(ValueError):
    """An event that does not fit the format."""


@dataclass(slots=True)
class Event:
    """One recorded event. ``data`` holds only fields from ``FIELDS[kind]``."""

    t: float
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    # "<batch_id>:<index>" once decoded from a batch; never serialised.
    eid: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, **self.data}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Event:
        """Parse a wire dict, rejecting unknown kinds and fields (format, not manifest)."""
        try:
            t = obj["t"]
            kind = obj["kind"]
        except (KeyError, TypeError) as exc:
            raise EventError(f"event without t or kind: {obj!r:.80}") from exc
        if not isinstance(t, int | float) or isinstance(t, bool):
            raise EventError(f"event time is not a number: {t!r:.40}")
        if kind not in FIELDS:
            raise EventError(f"unknown event kind {kind!r:.40}")
        data = {k: v for k, v in obj.items() if k not in ("t", "kind")}
        unknown = set(data) - set(FIELDS[kind])
        if unknown:
            raise EventError(f"{kind} carries fields outside the format: {sorted(unknown)}")
        return cls(float(t), kind, data)

    def project(self, allowed: frozenset[str] | set[str]) -> Event:
        """A copy carrying only the allowed fields (how the manifest is enforced)."""
        return Event(
            self.t, self.kind, {k: v for k, v in self.data.items() if k in allowed}, self.eid
        )
