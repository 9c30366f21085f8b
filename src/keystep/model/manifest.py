"""The collection manifest: the disclosure the code enforces (DESIGN.md, principle 2)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

import jsonschema
import rfc8785
import yaml

from keystep.model.events import FIELDS, Event

MANIFEST_SCHEMA: Final = "keystep-manifest/1"
PURPOSES: Final[tuple[str, ...]] = (
    "model-training",
    "dataset-review",
    "contributor-access",
    "security-investigation",
)


class ManifestError(ValueError):
    """A manifest that does not parse or does not satisfy the schema."""


class UndeclaredData(ValueError):
    """An event kind or field the manifest does not declare."""


@cache
def manifest_json_schema() -> dict[str, Any]:
    text = resources.files("keystep.model").joinpath("manifest.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True)
class ExcludedApp:
    label: str
    app: re.Pattern[str] | None
    title: re.Pattern[str] | None

    def matches(self, *, app: str | None, title: str | None) -> bool:
        if self.app is not None and app and self.app.search(app):
            return True
        return bool(self.title is not None and title and self.title.search(title))


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``raw`` is the document; ``digest`` binds consent to its text."""

    raw: Mapping[str, Any]
    digest: str

    @property
    def version(self) -> int:
        return int(self.raw["version"])

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.raw["collect"])

    def fields(self, kind: str) -> frozenset[str]:
        spec = self.raw["collect"].get(kind)
        return frozenset(spec["fields"]) if spec else frozenset()

    @property
    def pointer_rate_hz(self) -> float:
        spec = self.raw["collect"].get("pointer.move") or {}
        return float(spec.get("rate_hz", 20))

    @property
    def max_fps(self) -> float:
        spec = self.raw["collect"].get("screen.frame") or {}
        return float(spec.get("max_fps", 2))

    @property
    def excluded_apps(self) -> tuple[ExcludedApp, ...]:
        return tuple(
            ExcludedApp(
                label=e["label"],
                app=re.compile(e["app"]) if "app" in e else None,
                title=re.compile(e["title"]) if "title" in e else None,
            )
            for e in self.raw["excluded_apps"]
        )

    @property
    def redaction(self) -> Mapping[str, Any]:
        section: Mapping[str, Any] = self.raw["redaction"]
        return section

    @property
    def redaction_version(self) -> str:
        return str(self.raw["redaction"]["version"])

    @property
    def purposes(self) -> tuple[str, ...]:
        return tuple(self.raw["purposes"])

    @property
    def keep_months(self) -> int:
        return int(self.raw["retention"]["keep_months"])

    @property
    def batching(self) -> Mapping[str, Any]:
        section: Mapping[str, Any] = self.raw["batching"]
        return section

    def check_event(self, event: Event) -> None:
        """Raise UndeclaredData unless the event's kind and every field are declared."""
        spec = self.raw["collect"].get(event.kind)
        if spec is None:
            raise UndeclaredData(f"kind {event.kind!r} is not in manifest v{self.version}")
        extra = set(event.data) - set(spec["fields"])
        if extra:
            raise UndeclaredData(
                f"{event.kind} fields {sorted(extra)} are not in manifest v{self.version}"
            )

    def to_yaml(self) -> str:
        return yaml.safe_dump(dict(self.raw), sort_keys=False, allow_unicode=True)


def _validate(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a mapping")
    try:
        jsonschema.validate(doc, manifest_json_schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ManifestError(f"manifest invalid at {where}: {exc.message}") from exc
    for kind, spec in doc["collect"].items():
        extra = set(spec["fields"]) - set(FIELDS[kind])
        if extra:
            raise ManifestError(f"manifest declares unknown {kind} fields {sorted(extra)}")
    for entry in doc["excluded_apps"]:
        for key in ("app", "title"):
            if key in entry:
                try:
                    re.compile(entry[key])
                except re.error as exc:
                    raise ManifestError(
                        f"excluded app {entry['label']!r}: bad {key} regex"
                    ) from exc
    for entry in doc["access"]:
        if entry["purpose"] not in doc["purposes"]:
            raise ManifestError(f"access for {entry['role']} names undeclared purpose")


def manifest_from_mapping(doc: Any) -> Manifest:
    _validate(doc)
    digest = hashlib.sha256(rfc8785.dumps(doc)).hexdigest()
    return Manifest(raw=doc, digest=digest)


def load_manifest(text: str | bytes) -> Manifest:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"manifest is not valid YAML: {str(exc).splitlines()[0]}") from exc
    return manifest_from_mapping(doc)


def default_manifest_text() -> str:
    return resources.files("keystep.model").joinpath("default_manifest.yaml").read_text("utf-8")


def default_manifest() -> Manifest:
    return load_manifest(default_manifest_text())


def _names(items: Iterable[str]) -> str:
    return ", ".join(items) or "nothing"


def render_plain(m: Manifest) -> str:
    """The manifest as a person reads it before consenting."""
    raw = m.raw
    out = [f"{raw['title']} — version {m.version}", f"Published by: {raw['publisher']}", ""]
    out += [raw["summary"], "", "What is recorded:"]
    for kind, spec in raw["collect"].items():
        extra = ""
        if "rate_hz" in spec:
            extra = f" (at most {spec['rate_hz']:g} per second)"
        if "max_fps" in spec:
            extra = f" (at most {spec['max_fps']:g} screenshots per second)"
        out.append(f"  - {kind}{extra}: {spec['why']}")
        out.append(f"      fields: {_names(spec['fields'])}")
    out += ["", "Never recorded:"] + [f"  - {line}" for line in raw["never_collected"]]
    out += ["", "Apps and windows never recorded (nothing is captured while they are in front):"]
    out += [f"  - {e['label']}" for e in raw["excluded_apps"]]
    red = raw["redaction"]
    mode = "realistic stand-in values" if red["replacement"] == "surrogate" else "type tokens"
    out += [
        "",
        f"Redaction (version {red['version']}): on this device, before anything is stored;",
        f"  personal data and secrets are replaced by {mode}; screen text is filled in solid.",
        "",
        f"Kept for: {raw['retention']['keep_months']} months, then the keys are destroyed.",
        f"Used only for: {_names(raw['purposes'])}.",
        "Who may access what:",
    ]
    out += [f"  - {a['role']} ({a['purpose']}, {a['data']}): {a['why']}" for a in raw["access"]]
    out += [
        "",
        "You can pause at any time for as long as you like (keystep pause), forget the last",
        "minutes (keystep forget --last 10m), see who accessed your data (keystep audit log),",
        "and withdraw (keystep consent withdraw) or erase everything (keystep erase).",
    ]
    return "\n".join(out)


def diff_manifests(old: Manifest, new: Manifest) -> list[str]:
    """What changed from ``old`` to ``new``, one plain line per change."""
    lines: list[str] = []
    o, n = old.raw, new.raw
    for kind in n["collect"]:
        if kind not in o["collect"]:
            lines.append(f"NEW: now records {kind} ({_names(n['collect'][kind]['fields'])})")
            continue
        of, nf = set(o["collect"][kind]["fields"]), set(n["collect"][kind]["fields"])
        if nf - of:
            lines.append(f"MORE: {kind} now also records {_names(sorted(nf - of))}")
        if of - nf:
            lines.append(f"LESS: {kind} no longer records {_names(sorted(of - nf))}")
        for knob in ("rate_hz", "max_fps"):
            a, b = o["collect"][kind].get(knob), n["collect"][kind].get(knob)
            if a != b:
                lines.append(f"CHANGED: {kind} {knob} {a} -> {b}")
    lines += [f"LESS: no longer records {k}" for k in o["collect"] if k not in n["collect"]]
    old_ex = {e["label"]: e for e in o["excluded_apps"]}
    new_ex = {e["label"]: e for e in n["excluded_apps"]}
    lines += [f"LESS: now also excludes {label}" for label in new_ex if label not in old_ex]
    lines += [f"MORE: no longer excludes {label}" for label in old_ex if label not in new_ex]
    lines += [
        f"CHANGED: exclusion rule for {label}"
        for label in new_ex
        if label in old_ex and new_ex[label] != old_ex[label]
    ]
    for section in ("redaction", "retention", "batching"):
        if o[section] != n[section]:
            lines.append(f"CHANGED: {section}: {o[section]} -> {n[section]}")
    added = [p for p in n["purposes"] if p not in o["purposes"]]
    removed = [p for p in o["purposes"] if p not in n["purposes"]]
    if added:
        lines.append(f"MORE: new purposes {_names(added)}")
    if removed:
        lines.append(f"LESS: purposes removed {_names(removed)}")
    if o["access"] != n["access"]:
        lines.append("CHANGED: who may access what (see the access list)")
    if o["never_collected"] != n["never_collected"]:
        lines.append("CHANGED: the list of what is never recorded")
    if not lines and o != n:
        lines.append("CHANGED: wording only")
    return lines
