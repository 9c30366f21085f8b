"""The dataset card (README.md): what the dataset holds, under which disclosure, from whom."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from keystep.dataset.schema import DATASET_FORMAT_VERSION
from keystep.dataset.state import EXPORTED, REJECTED, DatasetState
from keystep.model.manifest import Manifest
from keystep.trajectory.actions import ACTION_FORMAT_VERSION, ACTION_TYPES

CONSENT_BASIS = {
    "model-training": (
        "each contributor's explicit consent to the collection manifest version named below, "
        "recorded with a receipt before anything was recorded; opened by the builder under a "
        "steward's grant for the purpose model-training"
    ),
    "contributor-access": "the contributor's own data, exported by and for them",
}


def _day(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def render_card(state: DatasetState, manifests: Mapping[int, Manifest]) -> str:
    exported = {k: v for k, v in state.batches.items() if v.status == EXPORTED}
    rejected = sum(1 for v in state.batches.values() if v.status == REJECTED)
    versions = sorted({v.manifest_version for v in exported.values()})
    redactions = sorted({v.redaction_version for v in exported.values()})
    contributors = sorted({state.contributor_pseudonym(v.contributor) for v in exported.values()})
    fmt = {"parquet": "parquet", "hf": "arrow", "webdataset": "webdataset"}[state.format]
    lines = [
        "---",
        "license: other",
        "task_categories: [image-text-to-text]",
        "tags: [computer-use, trajectories, keystep]",
    ]
    if state.format == "parquet":
        lines += ["configs:", "  - config_name: default", "    data_files: data/*.parquet"]
    lines += [
        "---",
        "",
        f"# keystep trajectories `{state.dataset_id}` (version {state.dataset_version})",
        "",
        "Observation → action steps of people operating software, recorded by keystep with "
        "consent, redacted on the device, sealed at the source and opened only through the "
        "vault.",
    ]
    if state.supersedes:
        lines += [
            "",
            f"This version supersedes `{state.supersedes}`: it was rebuilt after an erasure and "
            "holds nothing of erased contributors. Delete copies of the earlier version.",
        ]
    lines += [
        "",
        "## Provenance",
        "",
        f"- Format: {fmt}, trajectory dataset format v{DATASET_FORMAT_VERSION}, "
        f"action space v{ACTION_FORMAT_VERSION} (pyautogui-style `action_code`)",
        f"- Collection manifest version(s): {', '.join(map(str, versions)) or '-'}",
        f"- Consent basis: {CONSENT_BASIS.get(state.purpose, state.purpose)}",
        f"- Redaction version(s): {', '.join(redactions) or '-'}",
        f"- Screenshots: the full screen just before each action, {state.image_format}",
        f"- Time span: {_day(state.t_min)} to {_day(state.t_max)} (UTC days)",
        f"- Batches rejected by second-pass validation (never exported): {rejected}",
    ]
    for v in versions:
        m = manifests.get(v)
        if m is not None:
            lines.append(f"- Manifest v{v} digest: `{m.digest}`")
    lines += [
        "",
        "## Contents",
        "",
        f"- Episodes: {state.episodes}",
        f"- Steps: {state.steps}",
        "",
        "| action_type | steps |",
        "|---|---:|",
    ]
    lines += [f"| {t} | {state.counts.get(t, 0)} |" for t in ACTION_TYPES]
    lines += ["", "| app | steps |", "|---|---:|"]
    for app, n in sorted(state.apps.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {app or '(unknown)'} | {n} |")
    lines += [
        "",
        "## Lineage",
        "",
        "Contributor pseudonyms are keyed per dataset: the same person has unrelated "
        "pseudonyms in two datasets, so datasets cannot be joined on them. The builder keeps "
        "which batch came from whom (for erasure), outside this folder.",
        "",
        f"- Contributors ({len(contributors)}): " + ", ".join(f"`{c}`" for c in contributors),
        f"- Batches ({len(exported)}):",
        "",
    ]
    lines += [f"  - `{b}`" for b in sorted(exported)]
    return "\n".join(lines) + "\n"
