"""The manifest: schema, enforcement helpers, plain rendering and change reports."""

from __future__ import annotations

import copy

import pytest
import yaml

from keystep.model.events import Event
from keystep.model.manifest import (
    PURPOSES,
    ManifestError,
    UndeclaredData,
    default_manifest,
    diff_manifests,
    load_manifest,
    manifest_from_mapping,
    render_plain,
)


def test_default_manifest_is_valid_and_declares_every_kind() -> None:
    m = default_manifest()
    assert m.version == 1
    assert "text.typed" in m.kinds and "screen.frame" in m.kinds
    assert m.max_fps == 2
    assert set(m.purposes) <= set(PURPOSES)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("collect"), "collect"),
        (lambda d: d["collect"].update({"audio.clip": {"fields": [], "why": "x"}}), "audio.clip"),
        (lambda d: d["collect"]["pointer.down"]["fields"].append("pressure"), "pressure"),
        (lambda d: d.update(purposes=["marketing"]), "marketing"),
        (
            lambda d: d["access"].append(
                {
                    "role": "manager",
                    "purpose": "model-training",
                    "data": "sealed-batches",
                    "why": "x",
                }
            ),
            "manager",
        ),
        (lambda d: d["excluded_apps"].append({"label": "bad", "app": "(unclosed"}), "regex"),
        (lambda d: d.update(version=0), "version"),
        (lambda d: d["retention"].update(keep_months=0), "keep_months"),
        (lambda d: d["redaction"].update(replacement="blur"), "replacement"),
    ],
)
def test_invalid_manifests_are_rejected_with_a_reason(mutate, message) -> None:  # type: ignore[no-untyped-def]
    doc = copy.deepcopy(dict(default_manifest().raw))
    mutate(doc)
    with pytest.raises(ManifestError) as err:
        manifest_from_mapping(doc)
    assert message in str(err.value) or "invalid" in str(err.value)


def test_corrupt_yaml_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError):
        load_manifest("collect: [unclosed")
    with pytest.raises(ManifestError):
        load_manifest("just a string")


def test_check_event_rejects_undeclared_kinds_and_fields() -> None:
    doc = copy.deepcopy(dict(default_manifest().raw))
    doc["collect"]["window.focus"]["fields"] = ["window", "app"]
    del doc["collect"]["pointer.move"]
    m = manifest_from_mapping(doc)
    m.check_event(Event(1.0, "window.focus", {"window": 1, "app": "x"}))
    with pytest.raises(UndeclaredData):
        m.check_event(Event(1.0, "window.focus", {"window": 1, "title": "secret title"}))
    with pytest.raises(UndeclaredData):
        m.check_event(Event(1.0, "pointer.move", {"x": 1, "y": 2}))


def test_digest_changes_with_any_content_change() -> None:
    a = default_manifest()
    doc = copy.deepcopy(dict(a.raw))
    doc["summary"] += " "
    assert manifest_from_mapping(doc).digest != a.digest
    assert load_manifest(a.to_yaml()).digest == a.digest


def test_plain_rendering_names_everything_a_person_must_know() -> None:
    text = render_plain(default_manifest())
    for needle in (
        "version 1",
        "Never recorded",
        "Password managers",
        "months",
        "model-training",
        "keystep pause",
        "keystep consent withdraw",
    ):
        assert needle in text


def test_diff_reports_more_collection_and_fewer_exclusions() -> None:
    old = default_manifest()
    doc = copy.deepcopy(dict(old.raw))
    doc["version"] = 2
    doc["collect"]["pointer.move"]["rate_hz"] = 60
    doc["collect"]["window.focus"]["fields"] = ["window", "app"]
    doc["excluded_apps"] = doc["excluded_apps"][1:]
    doc["purposes"] = [*doc["purposes"], "security-investigation"]
    lines = diff_manifests(old, manifest_from_mapping(doc))
    text = "\n".join(lines)
    assert "pointer.move rate_hz 20 -> 60" in text
    assert "no longer records geometry, pid, redactions, title" in text
    assert "no longer excludes Password managers" in text
    assert "security-investigation" in text


def test_default_manifest_yaml_round_trips() -> None:
    m = default_manifest()
    assert yaml.safe_load(m.to_yaml()) == dict(m.raw)
