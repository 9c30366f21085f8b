"""The one place captured content meets the on-device redactor (keystep.redact).

Everything typed, every window title and every kept frame passes through here before it is
sealed. Without the redactor the recorder refuses to start; the only way around that is the
test flag ``KEYSTEP_TEST_UNREDACTED=1``, which tests of the capture path itself use.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from keystep.capture.fields import ScreenFocusBoard
from keystep.capture.sources.base import WindowInfo
from keystep.model.manifest import Manifest

TEST_FLAG: Final = "KEYSTEP_TEST_UNREDACTED"
FRAME_BUDGET_S: Final = 1.5

Image = npt.NDArray[np.uint8]


class RedactionUnavailable(RuntimeError):
    """The redactor cannot be loaded, so nothing may be recorded."""


class Redaction:
    """Adapter over ``keystep.redact.Redactor`` (or the explicit test pass-through)."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        passthrough: bool | None = None,
        focus: ScreenFocusBoard | None = None,
    ) -> None:
        """``focus``: where to post what each redacted frame says of the focused field."""
        self._focus = focus
        self.version = manifest.redaction_version
        self.screen = bool(manifest.redaction.get("screen", True))
        if passthrough is None:
            passthrough = os.environ.get(TEST_FLAG) == "1"
        self.passthrough = passthrough
        self._redactor: Any = None
        # The manifest's redaction.frame_budget_s once the redactor is loaded.
        self._budget = FRAME_BUDGET_S
        if passthrough:
            return
        try:
            from keystep.redact import RedactionSettings, Redactor  # type: ignore[attr-defined]

            settings = RedactionSettings.from_manifest_section(manifest.redaction)
            self._redactor = Redactor(settings, episode_salt=os.urandom(16))
            self._budget = float(settings.frame_budget_s)
        except Exception as exc:
            raise RedactionUnavailable(
                f"on-device redaction is unavailable ({type(exc).__name__}); refusing to record"
            ) from exc

    @property
    def reads_frames(self) -> bool:
        """Whether kept frames go through the screen redactor (which needs whole RGB images);
        otherwise only excluded windows are blacked out, which the frame encoder does."""
        return self._redactor is not None and self.screen

    def text(
        self,
        text: str,
        *,
        app: str | None,
        title: str | None,
        field: str | None,
        password_field: bool | None = None,
    ) -> tuple[str, int]:
        """``password_field`` is a field probe's verdict at the run's first key
        (``keystep.capture.fields``); the window and field names can still add a mask,
        never remove one."""
        if self._redactor is None:
            return text, 0
        password = password_field is True or self._redactor.is_password_context(
            app=app, title=title, field=field
        )
        out, n = self._redactor.redact_text(
            text, app=app, title=title, field=field, password_field=password
        )
        return str(out), int(n)

    def title(self, title: str | None) -> tuple[str | None, int]:
        if self._redactor is None or not title:
            return title, 0
        out, n = self._redactor.redact_title(title)
        return str(out), int(n)

    def frame(
        self,
        image: Image,
        *,
        window_key: str,
        blackout: list[tuple[int, int, int, int]],
        window: WindowInfo | None = None,
    ) -> tuple[Image, int] | None:
        """The redacted image and its count, or None: drop the frame, keep nothing of it.
        ``window`` is the focused window, whose field the frame may tell about."""
        n = 0
        for x, y, w, h in blackout:
            # Excluded windows are filled here as well, whatever the redactor does.
            image[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 0
            n += 1
        if self._redactor is None or not self.screen:
            return image, n
        result = self._redactor.redact_frame_result(
            image,
            window_key=window_key,
            blackout=blackout,
            deadline=time.monotonic() + self._budget,
        )
        if result is None:
            return None
        # Tk, Swing and other toolkits say nothing about a password field, nor does a
        # terminal in raw mode: the pixels may (the focused field's label, a prompt).
        if self._focus is not None:
            try:
                secret = self._redactor.typing_is_secret(
                    window_key,
                    result,
                    app=window.app if window else None,
                    area=window.geometry if window else None,
                )
            except Exception:
                secret = None  # a heuristic's failure must not cost the frame
            self._focus.post(secret)
        # The redactor's count already includes the blackout rectangles it was given.
        return np.asarray(result.image, dtype=np.uint8), len(result.boxes)
