"""The gate: decides for every event whether anything may be recorded at all.

Order of the checks: consent to the manifest in force (else nothing, not even a gap), then
pause, then pluggable conditions (the fleet lease), then the focused window against the
exclusions. Files are re-read when they change; the caller refreshes at least every 100 ms.
Anything unreadable fails safe: an unreadable pause file is a pause, an unreadable local
exclusion list excludes every window, an unreadable consent or manifest is no consent.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from keystep.capture.sources.base import WindowInfo
from keystep.capture.watch import FolderWatch
from keystep.home import Home
from keystep.model.manifest import ExcludedApp, Manifest, ManifestError, load_manifest

RECORDING: Final = "recording"
NO_CONSENT: Final = "no-consent"
PAUSED: Final = "paused"
BLOCKED: Final = "blocked"
EXCLUDED: Final = "excluded"

EXCLUSIONS_VERSION: Final = 1
FULL_LOOK_S: Final = 1.0


@dataclass(frozen=True)
class PauseState:
    paused: bool
    until: float | None = None  # None with paused=True: until `keystep resume`
    since: float = 0.0  # when the pause began; input from then on is dropped
    unreadable: bool = False


def read_pause(path: Path, now: float) -> PauseState:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return PauseState(False)
    except OSError:
        return PauseState(True, unreadable=True)
    try:
        doc = json.loads(raw)
        until = doc.get("until")
        since = doc.get("since", 0.0)
        if until is not None and not isinstance(until, int | float):
            raise ValueError("until")
        if not isinstance(since, int | float):
            raise ValueError("since")
    except (ValueError, AttributeError):
        return PauseState(True, unreadable=True)
    if until is not None and until <= now:
        return PauseState(False)
    return PauseState(True, float(until) if until is not None else None, float(since))


def read_consent(path: Path, manifest: Manifest) -> bool:
    """True only for ``state == given`` naming exactly this manifest's version and digest."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return (
        isinstance(doc, dict)
        and doc.get("state") == "given"
        and doc.get("manifest_version") == manifest.version
        and doc.get("manifest_digest") == manifest.digest
    )


def read_local_exclusions(path: Path) -> list[ExcludedApp]:
    """The contributor's own exclusions. Raises ValueError when the file is unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ValueError(f"cannot read {path.name}") from exc
    try:
        doc = json.loads(raw)
        if doc.get("version") != EXCLUSIONS_VERSION:
            raise ValueError("unknown version")
        return [
            ExcludedApp(
                label=str(e["label"]),
                app=re.compile(e["app"]) if e.get("app") else None,
                title=re.compile(e["title"]) if e.get("title") else None,
            )
            for e in doc["exclusions"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError, re.error) as exc:
        raise ValueError(f"{path.name} is not a valid exclusion list") from exc


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Gate:
    """Holds the current answer; ``refresh`` re-reads whatever changed on disk."""

    def __init__(self, home: Home, manifest: Manifest) -> None:
        self._home = home
        # Looked at up to ten times a second: the paths are made once (a Path per look costs
        # more than the stat).
        self._paths = {
            "manifest": str(home.manifest_file),
            "consent": str(home.consent_file),
            "pause": str(home.pause_file),
            "exclusions": str(home.exclusions_file),
        }
        files = [Path(p) for p in self._paths.values()]
        # Told by the kernel when one of them changes: no stats while nothing does, and the
        # recorder may sleep longer while idle (the watch's descriptor wakes it).
        self.watch = FolderWatch({f.parent for f in files}, {f.name for f in files})
        self._dirty = True  # a watched file changed since the last refresh
        self._next_full = 0.0
        self.manifest = manifest
        self._manifest_exclusions = manifest.excluded_apps
        self._conditions: dict[str, Callable[[], bool]] = {}
        self._stamps: dict[str, Any] = {}
        self.consent = False
        self.consent_changed = 0.0  # when the consent file last changed (wall clock)
        self.manifest_changed = False
        self.pause = PauseState(False)
        self._local: list[ExcludedApp] = []
        self._local_broken = False
        self.refresh(0.0, force=True)

    @property
    def pause_since(self) -> float:
        """When the pause in force began (infinity when not paused)."""
        return self.pause.since if self.pause.paused else float("inf")

    def add_condition(self, name: str, fn: Callable[[], bool]) -> None:
        """Another reason recording may stop (True = may record). Called for every event,
        so ``fn`` must answer from memory, without I/O."""
        self._conditions[name] = fn

    def _changed(self, key: str) -> bool:
        stamp = _stamp(self._paths[key])
        if self._stamps.get(key, ()) == stamp:
            return False
        self._stamps[key] = stamp
        return True

    def take_changes(self) -> None:
        """Take what the watch has seen so far (the recorder does, after writing its own
        status file beside the watched ones, so that its own write does not wake it)."""
        self._dirty = self.watch.changed() or self._dirty

    def refresh(self, now: float, *, force: bool = False) -> None:
        self.take_changes()
        if not (force or self._dirty or now >= self._next_full):
            if self.pause.until is not None:  # a pause for a while ends by the clock
                self.pause = read_pause(self._home.pause_file, now)
            return
        # Every file is looked at again at least once a second whatever the watch says (a
        # folder on a network file system hears nothing of other machines' writes).
        self._dirty, self._next_full = False, now + FULL_LOOK_S
        h = self._home
        if self._changed("manifest") or force:
            try:
                current = load_manifest(h.manifest_file.read_bytes())
                self.manifest_changed = current.digest != self.manifest.digest
            except (OSError, ManifestError):
                self.manifest_changed = True
        if self._changed("consent") or force:
            self.consent = read_consent(h.consent_file, self.manifest)
            stamp = self._stamps.get("consent")
            self.consent_changed = stamp[0] / 1e9 if stamp else now
        if self._changed("pause") or force or self.pause.until is not None:
            self.pause = read_pause(h.pause_file, now)
        if self._changed("exclusions") or force:
            try:
                self._local = read_local_exclusions(h.exclusions_file)
                self._local_broken = False
            except ValueError:
                self._local_broken = True

    def state(self, now: float) -> str:
        """What may happen now, before looking at the window."""
        if not self.consent or self.manifest_changed:
            return NO_CONSENT
        if self.pause.paused and (self.pause.until is None or now < self.pause.until):
            return PAUSED
        for fn in self._conditions.values():
            try:
                if not fn():
                    return BLOCKED
            except Exception:
                return BLOCKED
        return RECORDING

    def blocked_by(self) -> list[str]:
        out = []
        for name, fn in self._conditions.items():
            try:
                ok = fn()
            except Exception:
                ok = False
            if not ok:
                out.append(name)
        return out

    def excluded(self, window: WindowInfo | None) -> bool:
        """Whether this window may never be recorded. No window at all is not excluded."""
        if window is None:
            return False
        if self._local_broken:
            return True
        return any(
            e.matches(app=window.app, title=window.title)
            for e in (*self._manifest_exclusions, *self._local)
        )
