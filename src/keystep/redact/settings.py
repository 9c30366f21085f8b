"""Redaction settings, read from the manifest's ``redaction:`` section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

REDACTION_VERSION: Final = "r1"
COUNTRIES: Final = ("AU", "CA", "ES", "GB", "IN", "IT", "SG", "US")
"""Countries with country-specific recognizers (UK is accepted for GB)."""
"""The version of the detectors and rules in this package; bump it when what is redacted
changes, because it goes into every batch header and dataset card."""


@dataclass(frozen=True)
class RedactionSettings:
    """How the recorder redacts; the manifest discloses these values."""

    version: str = REDACTION_VERSION
    replacement: Literal["surrogate", "token"] = "surrogate"
    countries: tuple[str, ...] = ("US",)
    names: tuple[str, ...] = ()
    screen: bool = True
    frame_budget_s: float = 1.5
    workers: int = 2

    def __post_init__(self) -> None:
        if not self.version or not isinstance(self.version, str):
            raise ValueError("redaction.version must be a non-empty string")
        if self.replacement not in ("surrogate", "token"):
            raise ValueError("redaction.replacement must be 'surrogate' or 'token'")
        if not (0 < self.frame_budget_s <= 60):
            raise ValueError("redaction.frame_budget_s must be in (0, 60]")
        if not (1 <= self.workers <= 16):
            raise ValueError("redaction.workers must be between 1 and 16")
        unknown = {c.upper().replace("UK", "GB") for c in self.countries} - set(COUNTRIES)
        if unknown:
            raise ValueError(f"redaction.countries: no recognizers for {sorted(unknown)}")

    @classmethod
    def from_manifest_section(cls, section: Mapping[str, Any]) -> RedactionSettings:
        """Build from the manifest's ``redaction:`` mapping; absent keys keep their default."""
        known = {f.name for f in fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"unknown redaction settings: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key in ("countries", "names"):
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"redaction.{key} must be a list of strings")
                values[key] = tuple(value)
            elif key == "screen":
                if not isinstance(value, bool):
                    raise ValueError("redaction.screen must be true or false")
                values[key] = value
            elif key == "workers":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("redaction.workers must be an integer")
                values[key] = value
            elif key == "frame_budget_s":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError("redaction.frame_budget_s must be a number")
                values[key] = float(value)
            else:
                values[key] = str(value)
        return cls(**values)
