"""Dependencies the routes share, aliased: the open collector and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keystep.collector.credentials import Caller
from keystep.collector.service import Collector, authenticate

_bearer = HTTPBearer(
    auto_error=False, description="device credential, contributor token or staff API token"
)


def get_collector(request: Request) -> Collector:
    c: Collector = request.app.state.collector
    return c


CollectorDep = Annotated[Collector, Depends(get_collector)]


def current_caller(
    c: CollectorDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    header = f"Bearer {creds.credentials}" if creds is not None else None
    return authenticate(c, header)


CallerDep = Annotated[Caller, Depends(current_caller)]
