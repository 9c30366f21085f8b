"""Deciding that typing goes into a password field, and what each platform lets us know."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Words in a window title, an application class or a field's accessible name that mean a
# secret is being typed. "sign in"/"log in" pages get the whole run masked, user name
# included: losing a user name is cheaper than keeping a password.
_PASSWORD_WORDS: Final = re.compile(
    r"pass(?:word|wd|phrase|code|key)|\bpin\b|\bpin\s*code|\bsign[\s\-]?in\b|\blog[\s\-]?in\b|"
    r"\bsudo\b|\bssh\b|\bsu\b|unlock|authenticat|credential|\b2fa\b|\bmfa\b|\botp\b|"
    r"one[\s\-]time\s+code|verification\s+code|security\s+code|\bcvv\b|\bcvc\b|"
    r"keychain|keyring|kwallet|pinentry|askpass|polkit|\bsecret\b",
    re.I,
)
# Applications that only ever ask for secrets.
_PASSWORD_APPS: Final = frozenset(
    {
        "pinentry",
        "pinentry-gtk-2",
        "pinentry-gnome3",
        "pinentry-qt",
        "ssh-askpass",
        "ksshaskpass",
        "x11-ssh-askpass",
        "polkit-gnome-authentication-agent-1",
        "polkit-kde-authentication-agent-1",
        "gcr-prompter",
        "gnome-keyring-prompt",
        "kwalletd5",
        "kwalletd6",
        "keepassxc",
        "1password",
        "bitwarden",
        "lxpolkit",
    }
)
# A terminal prompt with echo off: what sudo, ssh, su, passwd, gpg and mysql print last.
_ECHO_OFF_PROMPT: Final = re.compile(
    r"(?:\[sudo\] password for \S+|password for \S+|passphrase for key .*|'s password|"
    r"enter (?:pem )?pass\s?phrase.*|(?:new |current |retype new |enter )?password|"
    r"verification code|pin)\s*:\s*$",
    re.I,
)


# Terminal emulators by window class: their last line of text is where the keys go.
_TERMINAL_APPS: Final = re.compile(
    r"(?i)xterm|uxterm|terminal|konsole|alacritty|kitty|rxvt|terminator|tilix|wezterm|"
    r"\bfoot\b|\bst(?:-256color)?\b|termite|guake|yakuake|terminology|sakura|\beterm\b|"
    r"tabby|ghostty|contour|\bwarp\b"
)


def is_terminal_app(app: str | None) -> bool:
    """Whether a window class is a terminal emulator's."""
    return bool(app) and _TERMINAL_APPS.search(app or "") is not None


def is_password_context(*, app: str | None, title: str | None, field: str | None) -> bool:
    """True when text typed in this window and field must become ``<PASSWORD>``."""
    if app and app.strip().lower() in _PASSWORD_APPS:
        return True
    return any(value and _PASSWORD_WORDS.search(value) for value in (field, title, app))


def is_echo_off_prompt(terminal_tail: str) -> bool:
    """True when a terminal's last output line is a prompt that reads a secret."""
    lines = terminal_tail.rstrip("\n").splitlines()
    return bool(lines) and _ECHO_OFF_PROMPT.search(lines[-1]) is not None


@dataclass(frozen=True)
class PlatformSupport:
    """What one platform or toolkit tells keystep about the focused field."""

    platform: str
    field_role: str  # how a password field can be recognised, if at all
    keystep_uses: str
    fallback: str


PLATFORM_SUPPORT: Final[tuple[PlatformSupport, ...]] = (
    PlatformSupport(
        "X11 (any toolkit)",
        "none: X11 knows windows, not fields",
        "window class and title (heuristics); the focused field's label on screen "
        "(`ScreenFocusProbe`)",
        "password-like token detector",
    ),
    PlatformSupport(
        "GTK 3/4 on X11 or Wayland, AT-SPI bus on",
        "AT-SPI role `password text` on the focused object",
        "field role from `AtspiFocusProbe` (tested with GTK 3: zenity --password), window title",
        "heuristics, token detector",
    ),
    PlatformSupport(
        "Qt 5/6, AT-SPI bridge on (QT_ACCESSIBILITY=1)",
        "AT-SPI role `password text` (QLineEdit in Password echo mode)",
        "field role from `AtspiFocusProbe` (not yet tested with Qt), window title",
        "heuristics, token detector",
    ),
    PlatformSupport(
        "Firefox (accessibility on)",
        "`<input type=password>` exposed as AT-SPI `password text`",
        "field role from `AtspiFocusProbe` (not yet tested with Firefox), page title",
        "heuristics, token detector",
    ),
    PlatformSupport(
        "Chromium/Chrome/Electron",
        "`password text` only when started with `--force-renderer-accessibility` and "
        "`ACCESSIBILITY_ENABLED=1` in its environment (or a screen reader running)",
        "field role from `AtspiFocusProbe` (tested with Chromium 156: "
        "`tests/e2e/test_browser_password_field.py`), page title",
        "heuristics (title), token detector",
    ),
    PlatformSupport(
        "Tk, Java Swing (no ATK bridge), SDL, games, remote desktops",
        "none",
        "window class and title; on the frame kept at a run's first key, the field that "
        "took the focus (focus ring, caret) and a label left of it naming a secret (PIN, "
        "password...): `ScreenFocusProbe` (tested with Tk: scripts/demo_app.py)",
        "password-like token detector",
    ),
    PlatformSupport(
        "Terminals on Linux (xterm, GNOME Terminal, Konsole, Alacritty)",
        "the pty's line discipline: ECHO off with ICANON on while sudo, ssh, su, passwd, gpg "
        "or `read -s` reads a line",
        "echo-off probe (`PtyEchoProbe`: the emulator's ptys through /proc, `tcgetattr`) "
        "at each run's first key; for a prompt in raw mode (sudo over ssh, tested), the "
        "terminal's last line read from the frame kept at that key (`ScreenFocusProbe`); "
        "title (sudo, ssh)",
        "password-like token detector (full-screen prompts: pinentry-curses)",
    ),
    PlatformSupport(
        "macOS (not yet supported by the agent)",
        "AXSecureTextField; secure input mode hides keys from every other app",
        "n/a",
        "n/a",
    ),
    PlatformSupport(
        "Windows (not yet supported by the agent)",
        "UI Automation IsPassword property",
        "n/a",
        "n/a",
    ),
)
