"""`keystep record | pause | resume | status | forget | exclude`: the contributor's controls."""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any, Final

from keystep.agent.deletions import DeletionQueue
from keystep.agent.status import read_agent_status
from keystep.capture.gate import EXCLUSIONS_VERSION, read_consent, read_pause
from keystep.capture.recorder import STATUS_SCHEMA, Recorder, forget_request_file
from keystep.cli.common import home_of, manifest_in_force
from keystep.cli.main import UsageError
from keystep.home import Home, write_json
from keystep.model.manifest import ManifestError
from keystep.outbox import Outbox

STATUS_JSON_SCHEMA: Final = "keystep-status/1"
PAUSE_VERSION: Final = 1
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
FORGET_WAIT_S: Final = 3.0


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` → seconds (no upper limit)."""
    m = _DURATION.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"bad duration {text!r}: use e.g. 90s, 30m, 2h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


# -- record ------------------------------------------------------------------------------


def run_record(args: argparse.Namespace) -> int:
    home = home_of(args)
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    recorder = Recorder(home, display=args.display, duration=args.duration)
    try:
        recorder.preflight()
        print(
            f"keystep: recording {recorder.display} into {home.outbox_db} "
            "(Ctrl-C stops; keystep pause pauses)",
            flush=True,
        )
        rc = recorder.run()
    finally:
        recorder.close()
    c = recorder.counts
    print(f"keystep: stopped; {c.batches} batch(es) sealed, {c.events} events, {c.frames} frames")
    return rc


# -- pause / resume ----------------------------------------------------------------------


def run_pause(args: argparse.Namespace) -> int:
    home = home_of(args)
    now = time.time()
    until = now + parse_duration(args.duration) if args.duration else None
    write_json(home.pause_file, {"version": PAUSE_VERSION, "since": now, "until": until})
    if until is None:
        print("keystep: paused until you run: keystep resume")
    else:
        print(f"keystep: paused until {_when(until)}")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    home = home_of(args)
    try:
        home.pause_file.unlink()
    except FileNotFoundError:
        print("keystep: was not paused")
        return 0
    print("keystep: recording resumed")
    return 0


# -- status ------------------------------------------------------------------------------


def _recorder_status(home: Home) -> dict[str, Any] | None:
    """The running recorder's own report, or None when no recorder is running."""
    try:
        doc = json.loads(home.recorder_status.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != STATUS_SCHEMA:
        return None
    pid = doc.get("pid")
    alive = isinstance(pid, int) and Path(f"/proc/{pid}").exists()
    fresh = time.time() - float(doc.get("updated", 0)) < 5
    if not alive or not fresh or doc.get("state") == "stopped":
        return None
    return doc


def _vault_info(home: Home, config: dict[str, Any]) -> dict[str, Any]:
    vault = config.get("vault") or {}
    if vault.get("kind") == "remote":
        # A managed device holds no vault: the collector's vault service does.
        return {"kind": "remote", "server": (config.get("collector") or {}).get("url")}
    try:
        path = home.vault_dir
    except Exception as exc:
        return {"error": str(exc)}
    info: dict[str, Any] = {"vault_dir": str(path)}
    try:
        from keystep.vault import open_local_vault

        vault = open_local_vault(path)
        try:
            info.update(vault.describe())
        finally:
            vault.close()
    except Exception as exc:
        info["error"] = f"cannot open the vault: {str(exc).splitlines()[0] if str(exc) else exc}"
    return info


def gather_status(home: Home) -> dict[str, Any]:
    now = time.time()
    try:
        manifest = manifest_in_force(home)
        consent = read_consent(home.consent_file, manifest)
        manifest_version: int | None = manifest.version
    except ManifestError:
        consent, manifest_version = False, None
    pause = read_pause(home.pause_file, now)
    rec = _recorder_status(home)
    if not consent:
        state = "no-consent"
    elif pause.paused:
        state = "paused"
    elif rec is None:
        state = "not-running"
    else:
        state = str(rec["state"])
    outbox = Outbox(home.outbox_db)
    try:
        counts = outbox.counts()
    finally:
        outbox.close()
    config = home.read_config()
    collector = dict(config.get("collector") or {"kind": "embedded"})
    managed = collector.get("kind") == "server"
    agent = read_agent_status(home, now=now) if managed else None
    try:
        deletions = len(DeletionQueue.of(home).ids())
    except RuntimeError:
        deletions = -1  # unreadable: said so below rather than failing the whole status
    return {
        "schema": STATUS_JSON_SCHEMA,
        "state": state,
        "recorder": (
            {
                k: rec[k]
                for k in (
                    "pid",
                    "display",
                    "started",
                    "state",
                    "indicator",
                    "counts",
                    "errors",
                    "screen_error",
                )
            }
            if rec is not None
            else None
        ),
        "consent": {"given": consent, "manifest_version": manifest_version},
        "paused": pause.paused,
        "paused_until": pause.until if pause.paused else None,
        "pause_unreadable": pause.unreadable,
        "indicator": rec["indicator"] if rec is not None else "none: not recording",
        "outbox": {"path": str(home.outbox_db), **counts, "deletions_queued": deletions},
        "collector": collector,
        "agent": (
            {k: agent[k] for k in ("pid", "server", "device_id", "connected", "lease")}
            if agent is not None
            else None
        ),
        "vault": _vault_info(home, config),
    }


def run_status(args: argparse.Namespace) -> int:
    home = home_of(args)
    st = gather_status(home)
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0
    lines = {
        "recording": "recording",
        "excluded": "recording, but the window in front is excluded: nothing is captured",
        "blocked": "not recording: blocked by "
        + ", ".join((st["recorder"] or {}).get("blocked_by", []) or ["a condition"]),
        "paused": "paused "
        + (f"until {_when(st['paused_until'])}" if st["paused_until"] else "until: keystep resume"),
        "no-consent": "not recording: no consent to the manifest in force (keystep consent show)",
        "not-running": "not recording: no recorder is running (keystep record)",
        "starting": "starting",
    }
    print(f"state:      {lines.get(st['state'], st['state'])}")
    if st["pause_unreadable"]:
        print("            (the pause file is unreadable, so recording stays paused)")
    rec = st["recorder"]
    if rec is not None:
        c = rec["counts"]
        print(
            f"recorder:   pid {rec['pid']} on {rec['display']} since {_when(rec['started'])}; "
            f"this run: {c['batches']} batches, {c['events']} events, {c['frames']} frames"
        )
        for err in rec.get("errors") or []:
            print(f"problem:    {err}")
    print(f"indicator:  {st['indicator']}")
    ob = st["outbox"]
    print(
        f"outbox:     {ob['pending']} sealed batch(es) waiting to upload "
        f"({ob['pending_bytes']} bytes), {ob['acknowledged']} uploaded — {ob['path']}"
    )
    if ob["deletions_queued"]:
        print(
            "            "
            + (
                "the queue of collector deletions is unreadable"
                if ob["deletions_queued"] < 0
                else f"{ob['deletions_queued']} uploaded batch(es) queued for deletion "
                "at the collector"
            )
        )
    col = st["collector"]
    if col.get("kind") == "server":
        print(f"collector:  {col.get('url')}")
        agent = st["agent"]
        if agent is None:
            print("lease:      no agent is running (keystep agent --server URL)")
        else:
            lease = agent["lease"]
            left = f", {lease['seconds_left']:.0f} s left" if lease["state"] == "held" else ""
            link = "connected" if agent["connected"] else "not connected"
            print(
                f"lease:      {lease['state']}{left} ({lease.get('reason', '')}; "
                f"agent pid {agent['pid']}, {link})"
            )
    else:
        print("collector:  embedded (in this home)")
    v = st["vault"]
    if v.get("kind") == "remote":
        print(f"vault:      remote, behind the collector {v.get('server')}")
    elif "error" in v:
        print(f"vault:      {v.get('vault_dir', '?')} ({v['error']})")
    else:
        print(f"vault:      {v.get('vault_dir')} (key store outside the home)")
        print(f"master key: {v.get('master_key')}")
    return 0


# -- forget ------------------------------------------------------------------------------


def collector_deletions_file(home: Home) -> Path:
    """Uploaded batch ids the collector must delete (the uploader drains this list)."""
    return DeletionQueue.of(home).path


def run_forget(args: argparse.Namespace) -> int:
    home = home_of(args)
    t1 = time.time()
    t0 = t1 - parse_duration(args.last)
    outbox = Outbox(home.outbox_db)
    try:
        uploaded = [bid for bid, state in outbox.overlapping(t0, t1) if state == "acknowledged"]
        removed = outbox.forget(t0, t1)
    finally:
        outbox.close()
    # Tell a running recorder to drop the batch in assembly (and anything it seals meanwhile).
    request_id = uuid.uuid4().hex
    write_json(forget_request_file(home), {"t0": t0, "t1": t1, "id": request_id})
    recorder_done = False
    if _recorder_status(home) is not None:
        deadline = time.monotonic() + FORGET_WAIT_S
        while time.monotonic() < deadline and not recorder_done:
            doc = _recorder_status(home) or {}
            recorder_done = doc.get("forget_done") == request_id
            if not recorder_done:
                time.sleep(0.05)
        if not recorder_done:
            raise RuntimeError("the running recorder did not confirm; run forget again")
    if uploaded:
        queue = DeletionQueue.of(home)
        # The queue is written first so a crash mid-deletion leaves the ids to retry.
        pending_ids = queue.add(uploaded)
        if home.read_config().get("collector", {}).get("kind") == "embedded":
            from keystep.collector.embedded import delete_batches

            delete_batches(home, pending_ids)
            queue.remove(pending_ids)
            queued_note = f"; {len(uploaded)} already in the local collector, deleted there too"
        else:
            # The agent's uploader sends them to the collector and keeps them queued
            # until it confirms.
            queued_note = f"; {len(uploaded)} already uploaded, queued for collector deletion"
    else:
        queued_note = ""
    print(
        f"keystep: forgot {_when(t0)} – {_when(t1)}: {len(removed)} sealed batch(es) deleted"
        + (", the batch in assembly dropped" if recorder_done else "")
        + queued_note
    )
    return 0


# -- exclude -----------------------------------------------------------------------------


def _read_exclusions(home: Home) -> list[dict[str, str]]:
    try:
        doc = json.loads(home.exclusions_file.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{home.exclusions_file} is unreadable; fix or delete it") from exc
    if doc.get("version") != EXCLUSIONS_VERSION:
        raise RuntimeError(f"{home.exclusions_file} has an unknown version")
    return list(doc.get("exclusions", []))


def run_exclude(args: argparse.Namespace) -> int:
    home = home_of(args)
    local = _read_exclusions(home)
    if args.list or not (args.app or args.title or args.remove):
        manifest = manifest_in_force(home)
        print("From the manifest (always excluded):")
        for e in manifest.raw["excluded_apps"]:
            print(f"  - {e['label']}")
        print("Your own additions:" if local else "Your own additions: none")
        for e in local:
            rules = ", ".join(f"{k} ~ /{e[k]}/" for k in ("app", "title") if e.get(k))
            print(f"  - {e['label']}: {rules}")
        return 0
    if args.remove:
        kept = [e for e in local if e.get("label") != args.remove]
        if len(kept) == len(local):
            raise UsageError(
                f"no local exclusion labelled {args.remove!r} (see: keystep exclude --list)"
            )
        write_json(home.exclusions_file, {"version": EXCLUSIONS_VERSION, "exclusions": kept})
        print(f"keystep: removed exclusion {args.remove!r}")
        return 0
    entry: dict[str, str] = {}
    for key in ("app", "title"):
        value = getattr(args, key)
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise UsageError(f"--{key} is not a valid regular expression: {exc}") from exc
            entry[key] = value
    entry["label"] = args.label or entry.get("app") or entry.get("title", "")
    local = [e for e in local if e.get("label") != entry["label"]] + [entry]
    write_json(home.exclusions_file, {"version": EXCLUSIONS_VERSION, "exclusions": local})
    print(f"keystep: excluded {entry['label']!r}; takes effect within 100 ms")
    return 0
