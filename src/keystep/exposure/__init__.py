"""The exposure scanner: prove, on demand and in CI, that no store is exposed."""

from __future__ import annotations

from keystep.exposure.audit import AuditChainCheck
from keystep.exposure.base import Check, Finding, ScanContext, ScanReport, context_for_home, scan
from keystep.exposure.envelopes import BlobEnvelopeCheck, OutboxEnvelopeCheck
from keystep.exposure.grants import BreakGlassCheck, GrantExpiryCheck
from keystep.exposure.modes import (
    HomeModesCheck,
    SqliteModesCheck,
    TempModesCheck,
    VaultLocationCheck,
    VaultModesCheck,
)
from keystep.exposure.plaintext import UnsealedContentCheck


def default_checks() -> list[Check]:
    """Every check of the embedded deployment. ``exposure/postgres.py`` adds the database's."""
    return [
        HomeModesCheck(),
        VaultModesCheck(),
        VaultLocationCheck(),
        SqliteModesCheck(),
        TempModesCheck(),
        OutboxEnvelopeCheck(),
        BlobEnvelopeCheck(),
        UnsealedContentCheck(),
        GrantExpiryCheck(),
        BreakGlassCheck(),
        AuditChainCheck(),
    ]


__all__ = [
    "Check",
    "Finding",
    "ScanContext",
    "ScanReport",
    "context_for_home",
    "default_checks",
    "scan",
]
