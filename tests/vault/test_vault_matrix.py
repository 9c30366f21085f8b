"""The authorization matrix through the in-process API: unseal and feed, every role × purpose
× own/other, without and with every grant the vault lets a steward create."""

from __future__ import annotations

import contextlib
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from vaultkit import STEWARD_A, STEWARD_B, Clock, make_device, seal_for

from keystep.model.manifest import PURPOSES
from keystep.policy.model import ROLES, PolicyError, Principal
from keystep.vault.base import AccessDenied
from keystep.vault.local import LocalVault

# The expected table lives with the decision-function matrix; both suites share it.
sys.path.insert(0, str(Path(__file__).parent.parent / "policy"))
from policykit import ALLOWED


def _principal(role: str, whose: str, owner_id: str) -> Principal:
    if role == "contributor":
        return Principal(owner_id if whose == "own" else "zed@example.org", role)
    return Principal(f"{role}-1", role)


def _grant_everything(vault: LocalVault, p: Principal, pseudonym: str, clock: Clock) -> None:
    for purpose in PURPOSES:
        for data_class in ("sealed-batches", "released-datasets"):
            with contextlib.suppress(PolicyError):
                vault.create_grant(
                    p, purpose, data_class, by=STEWARD_A, expires=clock.now + timedelta(days=1)
                )
    with contextlib.suppress(AccessDenied):
        vault.open_break_glass(
            p,
            pseudonym,
            approvers=(STEWARD_A, STEWARD_B),
            justification="matrix",
            expires=clock.now + timedelta(hours=1),
        )


@pytest.mark.parametrize("granted", [False, True], ids=["bare", "granted"])
@pytest.mark.parametrize("whose", ["own", "other"])
@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize("role", list(ROLES))
def test_unseal_and_feed_matrix(
    vault: LocalVault, clock: Clock, role: str, purpose: str, whose: str, granted: bool
) -> None:
    dev = make_device(vault)
    blob = seal_for(vault, dev)
    p = _principal(role, whose, dev.contributor_id)
    if granted:
        _grant_everything(vault, p, dev.pseudonym, clock)
    for op in ("unseal", "read-feed"):
        how = ALLOWED.get((role, op, purpose, whose))
        expected = how is not None and (granted or how == "always")
        try:
            if op == "unseal":
                vault.unseal(blob, principal=p, purpose=purpose)
            else:
                vault.feed(dev.pseudonym, principal=p, purpose=purpose)
            allowed = True
        except AccessDenied:
            allowed = False
        assert allowed is expected, (op, role, purpose, whose, granted)
