"""The Redactor the recorder calls: text, titles and frames of one recording."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from keystep.redact.focus import Focus, FocusTracker, prompt_reads_secret
from keystep.redact.label_detector import LabelledValueDetector
from keystep.redact.names_detector import NameDirectoryDetector
from keystep.redact.number_detector import NumberDetector
from keystep.redact.ocr import OcrPool, TesseractEngine, Word
from keystep.redact.ocr_detectors import (
    OcrCredentialDetector,
    OcrEmailDetector,
    OcrLabelledValueDetector,
    OcrNumberDetector,
)
from keystep.redact.password_fields import is_password_context, is_terminal_app
from keystep.redact.password_token_detector import PasswordTokenDetector
from keystep.redact.presidio_detector import PresidioDetector
from keystep.redact.screen import FrameResult, ScreenRedactor, blackout_only
from keystep.redact.secrets_detector import SecretsDetector
from keystep.redact.settings import RedactionSettings
from keystep.redact.spans import Span, TextDetector
from keystep.redact.surrogates import PASSWORD_FIELD_TOKEN, SurrogateFactory
from keystep.redact.text import TextRedactor

FOCUS_LABEL_BUDGET_S: Final = 0.3


class Redactor:
    """Everything the recorder redacts before sealing, for one recording.

    ``episode_salt`` scopes surrogate consistency: within one salt a value always becomes
    the same surrogate; another salt gives other surrogates.
    """

    def __init__(self, settings: RedactionSettings, *, episode_salt: bytes) -> None:
        if not episode_salt:
            raise ValueError("episode_salt must not be empty")
        self.settings = settings
        detectors: list[TextDetector] = [
            PresidioDetector(settings.countries),
            NumberDetector(),
            SecretsDetector(),
            PasswordTokenDetector(),
            LabelledValueDetector(),
        ]
        if settings.names:
            detectors.append(NameDirectoryDetector(settings.names))
        self._text = TextRedactor(
            detectors,
            SurrogateFactory(episode_salt=episode_salt, mode=settings.replacement),
        )
        self._pool: OcrPool | None = None
        self._screen: ScreenRedactor | None = None
        if settings.screen:
            self._pool = OcrPool(TesseractEngine, settings.workers)
            self._screen = ScreenRedactor(
                [
                    *detectors,
                    *([NameDirectoryDetector(settings.names, ocr=True)] if settings.names else []),
                    OcrNumberDetector(),
                    OcrEmailDetector(),
                    OcrCredentialDetector(),
                    OcrLabelledValueDetector(),
                ],
                self._pool,
            )
        self._focus = FocusTracker()
        self._closed = threading.Event()

    def is_password_context(self, *, app: str | None, title: str | None, field: str | None) -> bool:
        return is_password_context(app=app, title=title, field=field)

    def redact_text(
        self,
        text: str,
        *,
        app: str | None = None,
        title: str | None = None,
        field: str | None = None,
        password_field: bool | None = None,
    ) -> tuple[str, int]:
        """Redacted ``text`` and the number of replacements.

        ``password_field`` is what the platform says about the focused field; when it says
        nothing (None) the window and field names decide. In a password field the whole run
        becomes ``<PASSWORD>``, whatever its length.
        """
        if password_field is None:
            password_field = is_password_context(app=app, title=title, field=field)
        if password_field:
            return (PASSWORD_FIELD_TOKEN, 1) if text else ("", 0)
        return self._text.redact(text)

    def find_spans(self, text: str) -> list[Span]:
        """The sensitive spans ``redact_text`` would replace (for the evaluation harness)."""
        return self._text.find(text)

    def redact_title(self, title: str) -> tuple[str, int]:
        return self._text.redact(title)

    def redact_frame(
        self,
        image: npt.NDArray[np.uint8],
        *,
        window_key: str,
        blackout: Sequence[tuple[int, int, int, int]] = (),
        deadline: float | None = None,
    ) -> tuple[npt.NDArray[np.uint8], int] | None:
        """A redacted copy of ``image`` and how many boxes were filled, or None when it
        cannot be finished by ``deadline`` (a ``time.monotonic()`` value; by default the
        settings' frame budget from now): the caller then drops the frame."""
        result = self.redact_frame_result(
            image, window_key=window_key, blackout=blackout, deadline=deadline
        )
        if result is None:
            return None
        return result.image, len(result.boxes)

    def redact_frame_result(
        self,
        image: npt.NDArray[np.uint8],
        *,
        window_key: str,
        blackout: Sequence[tuple[int, int, int, int]] = (),
        deadline: float | None = None,
    ) -> FrameResult | None:
        """Like ``redact_frame`` with the filled boxes (for the evaluation harness)."""
        if self._closed.is_set():
            raise RuntimeError("Redactor is closed")
        if deadline is None:
            deadline = time.monotonic() + self.settings.frame_budget_s
        if self._screen is None:
            return blackout_only(image, blackout)
        return self._screen.redact(
            image, window_key=window_key, blackout=blackout, deadline=deadline
        )

    def focused_field(self, window_key: str, result: FrameResult) -> Focus | None:
        """The field of the window that has the keyboard focus, as the pixels tell it (the
        area that gained a focus ring or caret since the window's previous frame, and the
        label next to it), given each kept frame's result in turn; None when unknown.
        ``Focus.password`` says whether its label names a secret (PIN, password...)."""
        pool = self._pool

        def read(gray: npt.NDArray[np.uint8]) -> list[Word]:
            if pool is None:
                return []
            deadline = time.monotonic() + FOCUS_LABEL_BUDGET_S
            return pool.submit(gray, deadline=deadline).result(timeout=FOCUS_LABEL_BUDGET_S)

        return self._focus.update(window_key, result.image, result.words, read)

    def typing_is_secret(
        self,
        window_key: str,
        result: FrameResult,
        *,
        app: str | None = None,
        area: tuple[int, int, int, int] | None = None,
    ) -> bool | None:
        """What a kept frame says of the field typing goes to: True when it is a password
        field — the focused field's label names a secret, or, in a terminal window (``app``,
        its ``area``), the last line is a prompt that reads one (a remote sudo over ssh,
        which no local probe can see); None when the pixels do not tell."""
        focus = self.focused_field(window_key, result)
        if focus is not None and focus.password:
            return True
        if is_terminal_app(app) and prompt_reads_secret(result.words, area):
            return True
        return None

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Redactor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
