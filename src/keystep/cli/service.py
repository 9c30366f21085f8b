"""`keystep serve`, `keystep agent` and `keystep fleet halt|resume`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Final, Literal

from keystep.cli.main import UsageError
from keystep.home import resolve_home

SERVE_BACKLOG: Final = 4096


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from keystep.web.app import Settings, create_app

    home = resolve_home(getattr(args, "home", None))
    vault = getattr(args, "vault", None) or os.environ.get("KEYSTEP_VAULT")
    if vault is None and home.exists():
        vault = str(home.vault_dir)
    tokens = getattr(args, "tokens", None)
    settings = Settings(
        db=args.db or f"sqlite:///{home.collector_db}",
        blobs=args.blobs or str(home.blobs_dir),
        state_dir=Path(getattr(args, "state", None) or home.collector_dir / "service"),
        vault_dir=Path(vault) if vault else None,
        tokens_file=Path(tokens) if tokens else None,
        lease_ttl=float(getattr(args, "lease_ttl", None) or 30.0),
        max_batch_bytes=int(getattr(args, "max_batch_bytes", None) or 64 * 1024 * 1024),
    )
    if not (0 < settings.lease_ttl <= 300):
        raise UsageError("--lease-ttl must be in (0, 300] seconds")
    _raise_fd_limit()
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        # Every device holds a lease stream: thousands of connections, many arriving at
        # once after a collector restart.
        backlog=SERVE_BACKLOG,
        loop=_loop(),
        http="httptools" if _importable("httptools") else "h11",
        timeout_graceful_shutdown=3,
    )
    return 0


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _loop() -> Literal["uvloop", "asyncio"]:
    return "uvloop" if _importable("uvloop") else "asyncio"


def _raise_fd_limit() -> None:
    """One descriptor per connected device: take the hard limit, not the default 1,024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_agent(args: argparse.Namespace) -> int:
    from keystep.agent.run import AgentOptions, run

    home = resolve_home(getattr(args, "home", None))
    return run(
        home,
        AgentOptions(
            server=args.server,
            enroll_code=args.enroll_code,
            record=not getattr(args, "no_record", False),
            display=args.display,
            duration=args.duration,
        ),
    )


def _fleet(args: argparse.Namespace, action: str) -> int:
    import httpx

    token = getattr(args, "token", None) or os.environ.get("KEYSTEP_TOKEN")
    if not token:
        raise UsageError("a steward API token is needed: --token or KEYSTEP_TOKEN")
    server = args.server
    if not server:
        from keystep.agent.client import credential_file

        path = credential_file(resolve_home(getattr(args, "home", None)))
        if not path.exists():
            raise UsageError("--server URL is needed (this home is not enrolled)")
        server = json.loads(path.read_text("utf-8"))["server"]
    resp = httpx.post(
        f"{server.rstrip('/')}/v1/fleet/{action}",
        timeout=30,
        json={"reason": args.reason or ""},
        headers={"Authorization": f"Bearer {token}"},
    )
    if resp.status_code != 200:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text[:200]
        raise RuntimeError(f"the collector refused ({resp.status_code}): {detail}")
    s = resp.json()
    print(f"fleet {'halted' if s['halted'] else 'running'} (generation {s['generation']})")
    return 0


def run_fleet_halt(args: argparse.Namespace) -> int:
    return _fleet(args, "halt")


def run_fleet_resume(args: argparse.Namespace) -> int:
    return _fleet(args, "resume")
