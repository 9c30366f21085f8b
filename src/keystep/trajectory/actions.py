"""The action space of a trajectory step, and its pyautogui-style code (as OSWorld/OpenCUA use)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

ACTION_FORMAT_VERSION: Final = 1

CLICK: Final = "click"
DOUBLE_CLICK: Final = "double_click"
TRIPLE_CLICK: Final = "triple_click"
RIGHT_CLICK: Final = "right_click"
MIDDLE_CLICK: Final = "middle_click"
DRAG: Final = "drag"
SCROLL: Final = "scroll"
TYPE: Final = "type"
KEY: Final = "key"
HOTKEY: Final = "hotkey"

ACTION_TYPES: Final[tuple[str, ...]] = (
    CLICK,
    DOUBLE_CLICK,
    TRIPLE_CLICK,
    RIGHT_CLICK,
    MIDDLE_CLICK,
    DRAG,
    SCROLL,
    TYPE,
    KEY,
    HOTKEY,
)

# pynput key names → pyautogui key names. Names not listed are the same in both (enter, tab,
# backspace, delete, home, end, up, f1, ...). Sided modifiers collapse to the generic name:
# a hotkey means the same whichever ctrl was pressed, and pyautogui's generic names are what
# public datasets use. AltGr stays distinct because it changes which character a key makes.
PYAUTOGUI_KEYS: Final[dict[str, str]] = {
    "esc": "esc",
    "page_up": "pageup",
    "page_down": "pagedown",
    "caps_lock": "capslock",
    "num_lock": "numlock",
    "scroll_lock": "scrolllock",
    "print_screen": "printscreen",
    "menu": "apps",
    "ctrl_l": "ctrl",
    "ctrl_r": "ctrl",
    "shift_l": "shift",
    "shift_r": "shift",
    "alt_l": "alt",
    "alt_r": "alt",
    "alt_gr": "altright",
    "cmd": "win",
    "cmd_l": "win",
    "cmd_r": "win",
    "media_play_pause": "playpause",
    "media_next": "nexttrack",
    "media_previous": "prevtrack",
    "media_volume_up": "volumeup",
    "media_volume_down": "volumedown",
    "media_volume_mute": "volumemute",
}

# Order in which modifiers are written in a hotkey, so that ctrl+shift+t reads the same
# whichever modifier went down first.
MODIFIER_ORDER: Final[tuple[str, ...]] = ("ctrl", "alt", "altright", "shift", "win")


def pyautogui_key(name: str) -> str:
    """The pyautogui name of a recorded key; letters lower-cased (shift is a separate key)."""
    mapped = PYAUTOGUI_KEYS.get(name, name)
    return mapped.lower() if len(mapped) == 1 else mapped


@dataclass(frozen=True, slots=True)
class Action:
    """One step's action, in screen pixels, with the raw events it was reduced from."""

    action_type: str
    t: float
    x: int | None = None
    y: int | None = None
    to_x: int | None = None
    to_y: int | None = None
    button: str | None = None
    text: str | None = None
    # key: the one key; hotkey: modifiers then key; click/drag: modifiers held (may be empty)
    keys: tuple[str, ...] = ()
    dx: int | None = None
    dy: int | None = None
    # how many times a key or hotkey was pressed: auto-repeat folded into one action
    presses: int = 1
    t_end: float | None = None
    # the window the recorder saw the action in (text.typed carries it); else None
    window: str | None = None
    sources: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.action_type not in ACTION_TYPES:
            raise ValueError(f"unknown action type {self.action_type!r}")

    @property
    def action_code(self) -> str:
        return action_code(self)


def _held(keys: tuple[str, ...], inner: str) -> str:
    """Wrap a pointer action in keyDown/keyUp for modifiers held during it (shift+click)."""
    if not keys:
        return inner
    down = "; ".join(f"pyautogui.keyDown({k!r})" for k in keys)
    up = "; ".join(f"pyautogui.keyUp({k!r})" for k in reversed(keys))
    return f"{down}; {inner}; {up}"


def action_code(a: Action) -> str:
    """pyautogui code that re-performs the action (OSWorld/OpenCUA action space)."""
    kind = a.action_type
    if kind in (CLICK, DOUBLE_CLICK, TRIPLE_CLICK, RIGHT_CLICK, MIDDLE_CLICK):
        fn = {
            CLICK: "click",
            DOUBLE_CLICK: "doubleClick",
            TRIPLE_CLICK: "tripleClick",
            RIGHT_CLICK: "rightClick",
            MIDDLE_CLICK: "middleClick",
        }[kind]
        # right/middle are in the function name; only other buttons need saying
        plain = kind in (RIGHT_CLICK, MIDDLE_CLICK) or a.button in (None, "left")
        extra = "" if plain else f", button={a.button!r}"
        return _held(a.keys, f"pyautogui.{fn}(x={a.x}, y={a.y}{extra})")
    if kind == DRAG:
        inner = (
            f"pyautogui.moveTo(x={a.x}, y={a.y}); "
            f"pyautogui.dragTo(x={a.to_x}, y={a.to_y}, button={a.button or 'left'!r})"
        )
        return _held(a.keys, inner)
    if kind == SCROLL:
        # Recorded dy > 0 scrolls down; pyautogui's positive clicks scroll up.
        parts = []
        if a.dy:
            parts.append(f"pyautogui.scroll({-a.dy}, x={a.x}, y={a.y})")
        if a.dx:
            parts.append(f"pyautogui.hscroll({a.dx}, x={a.x}, y={a.y})")
        return "; ".join(parts) if parts else f"pyautogui.scroll(0, x={a.x}, y={a.y})"
    if kind == TYPE:
        return f"pyautogui.write({a.text or ''!r})"
    if kind == KEY:
        key = a.keys[0] if a.keys else ""
        if a.presses > 1:
            return f"pyautogui.press({key!r}, presses={a.presses})"
        return f"pyautogui.press({key!r})"
    # hotkey
    args = ", ".join(repr(k) for k in a.keys)
    code = f"pyautogui.hotkey({args})"
    if a.presses > 1:
        return "; ".join([code] * a.presses)
    return code
