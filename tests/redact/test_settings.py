"""RedactionSettings from the manifest's redaction section."""

from __future__ import annotations

import pytest

from keystep.redact import REDACTION_VERSION, RedactionSettings


def test_defaults_when_section_is_empty() -> None:
    settings = RedactionSettings.from_manifest_section({})
    assert settings == RedactionSettings()
    assert settings.version == REDACTION_VERSION
    assert settings.replacement == "surrogate"
    assert settings.countries == ("US",)


def test_every_key_is_read() -> None:
    settings = RedactionSettings.from_manifest_section(
        {
            "version": "r9",
            "replacement": "token",
            "countries": ["US", "GB"],
            "names": ["Priya Raman"],
            "screen": False,
            "frame_budget_s": 2,
            "workers": 3,
        }
    )
    assert settings == RedactionSettings(
        version="r9",
        replacement="token",
        countries=("US", "GB"),
        names=("Priya Raman",),
        screen=False,
        frame_budget_s=2.0,
        workers=3,
    )


@pytest.mark.parametrize(
    "section",
    [
        {"replacement": "blur"},
        {"countries": "US"},
        {"names": [1, 2]},
        {"screen": "yes"},
        {"workers": 0},
        {"workers": True},
        {"frame_budget_s": 0},
        {"version": ""},
        {"surprise": 1},
        {"countries": ["US", "XX"]},
    ],
)
def test_bad_sections_are_refused(section: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RedactionSettings.from_manifest_section(section)


def test_the_country_list_matches_the_recognizers() -> None:
    from keystep.redact.presidio_detector import SUPPORTED_COUNTRIES
    from keystep.redact.settings import COUNTRIES

    assert tuple(sorted(COUNTRIES)) == SUPPORTED_COUNTRIES


def test_the_shipped_manifest_section_is_accepted() -> None:
    from keystep.model.manifest import default_manifest

    settings = RedactionSettings.from_manifest_section(default_manifest().redaction)
    assert settings.version == REDACTION_VERSION
