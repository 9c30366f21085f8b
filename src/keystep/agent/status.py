"""The running agent's report in the home's state folder, which ``keystep status`` reads.

Written by ``keystep agent`` every second and on each lease change: the collector it talks
to and its lease (held, expired, halted or none, and the seconds left). The lease is timed
on the agent's monotonic clock; the file carries the wall time it runs out so another
process can count down. Light on purpose: the CLI imports it without the HTTP client.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Final, Literal

from keystep.home import Home, write_json

AGENT_STATUS_SCHEMA: Final = "keystep-agent-status/1"
STALE_AFTER_S: Final = 5.0

LeaseState = Literal["held", "expired", "halted", "none"]


def agent_status_file(home: Home) -> Path:
    return home.state_dir / "agent.json"


def write_agent_status(
    home: Home,
    *,
    server: str,
    device_id: str,
    lease: LeaseState,
    seconds_left: float,
    reason: str,
    connected: bool,
    now: float | None = None,
) -> None:
    now = time.time() if now is None else now
    write_json(
        agent_status_file(home),
        {
            "schema": AGENT_STATUS_SCHEMA,
            "pid": os.getpid(),
            "updated": now,
            "server": server,
            "device_id": device_id,
            "connected": connected,
            "lease": {"state": lease, "valid_until": now + seconds_left, "reason": reason},
        },
    )


def read_agent_status(home: Home, *, now: float | None = None) -> dict[str, Any] | None:
    """The running agent's report with the lease's ``seconds_left`` as of ``now``; None when
    no agent runs (no file, another format, a dead process or a report gone stale)."""
    now = time.time() if now is None else now
    try:
        doc = json.loads(agent_status_file(home).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != AGENT_STATUS_SCHEMA:
        return None
    pid = doc.get("pid")
    if not isinstance(pid, int) or not Path(f"/proc/{pid}").exists():
        return None
    if now - float(doc.get("updated", 0)) > STALE_AFTER_S:
        return None
    lease = dict(doc.get("lease") or {})
    left = max(0.0, float(lease.get("valid_until", 0)) - now)
    if lease.get("state") == "held" and left == 0.0:
        lease["state"] = "expired"  # ran out since the agent last wrote
    lease["seconds_left"] = round(left, 1)
    doc["lease"] = lease
    return doc
