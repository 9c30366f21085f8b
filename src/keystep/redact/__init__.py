"""On-device redaction of typed text, window titles and screen frames (issue 3)."""

from __future__ import annotations

from keystep.redact.password_fields import PLATFORM_SUPPORT, is_password_context
from keystep.redact.pipeline import Redactor
from keystep.redact.settings import REDACTION_VERSION, RedactionSettings
from keystep.redact.surrogates import PASSWORD_FIELD_TOKEN

__all__ = [
    "PASSWORD_FIELD_TOKEN",
    "PLATFORM_SUPPORT",
    "REDACTION_VERSION",
    "RedactionSettings",
    "Redactor",
    "is_password_context",
]
