"""The authorization matrix: every role × operation × purpose × own/other contributor.

The expected outcomes are written out in policykit.py as a literal table, independent of
``keystep.policy.model.RULES``: a change to the rules that is not also made here fails.
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from policykit import ALLOWED, ANY, DR, MT, SI

from keystep.model.manifest import PURPOSES
from keystep.policy.decide import decide
from keystep.policy.model import OPERATIONS, ROLES, BreakGlass, Grant, PolicyError, Principal

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
OWNER = "p_owner"
OTHER = "p_other"


def _principal(role: str, whose: str) -> Principal:
    if role == "contributor":
        return Principal("someone", role, pseudonym=OWNER if whose == "own" else "p_me")
    return Principal(f"{role}-1", role)


def _every_grant_for(p: Principal, contributor: str) -> list[Grant | BreakGlass]:
    """Every grant the schema lets exist for this principal, plus a break-glass."""
    out: list[Grant | BreakGlass] = []
    for purpose, data_class in itertools.product(PURPOSES, ("sealed-batches", "released-datasets")):
        with contextlib.suppress(PolicyError):  # e.g. an operator can never be granted anything
            out.append(
                Grant(
                    grant_id=f"g-{purpose}-{data_class}",
                    principal=p.name,
                    role=p.role,
                    purpose=purpose,
                    data_class=data_class,
                    expires=NOW + timedelta(days=1),
                    created=NOW - timedelta(days=1),
                    created_by="steward-a",
                )
            )
    out.append(
        BreakGlass(
            grant_id="bg",
            principal=p.name,
            contributor=contributor,
            approvers=("steward-a", "steward-b"),
            justification="incident",
            opened=NOW - timedelta(hours=1),
            expires=NOW + timedelta(hours=1),
        )
    )
    return out


CELLS = [
    (role, op, purpose, whose)
    for role in ROLES
    for op, spec in OPERATIONS.items()
    for purpose in (PURPOSES if spec.needs_purpose else (None, *PURPOSES))
    for whose in ("own", "other")
]


def _expected(role: str, op: str, purpose: str | None, whose: str) -> str | None:
    if OPERATIONS[op].needs_purpose:
        assert purpose is not None
        return ALLOWED.get((role, op, purpose, whose))
    return ALLOWED.get((role, op, ANY, whose))


@pytest.mark.parametrize(("role", "op", "purpose", "whose"), CELLS)
def test_matrix_decision_function(role: str, op: str, purpose: str | None, whose: str) -> None:
    how = _expected(role, op, purpose, whose)
    p = _principal(role, whose)
    contributor = OWNER
    bare = decide(p, op, purpose, contributor=contributor, grants=[], now=NOW)
    full = decide(
        p, op, purpose, contributor=contributor, grants=_every_grant_for(p, contributor), now=NOW
    )
    assert bare.allowed is (how == "always"), bare.reason
    # Grants never widen what a role may do; they only enable the cells that name them.
    assert full.allowed is (how is not None), full.reason


def test_matrix_covers_every_role_operation_and_purpose() -> None:
    assert {c[0] for c in CELLS} == set(ROLES)
    assert {c[1] for c in CELLS} == set(OPERATIONS)
    assert len(CELLS) > 500
    # No role reads raw batches without a grant, break-glass, or being their owner.
    assert {(k[0], v) for k, v in ALLOWED.items() if k[1] == "unseal"} == {
        ("contributor", "always"),
        ("builder", "grant"),
        ("steward", "break-glass"),
    }


@pytest.mark.parametrize("role", ["hr", "manager", "admin", ""])
def test_there_is_no_role_for_hr_or_managers(role: str) -> None:
    with pytest.raises(PolicyError):
        Principal("x", role)


@pytest.mark.parametrize("purpose", ["performance-review", "curiosity", "", "MODEL-TRAINING"])
def test_a_purpose_outside_the_list_is_a_schema_error(purpose: str) -> None:
    with pytest.raises(PolicyError):
        decide(Principal("b", "builder"), "unseal", purpose, contributor=OWNER, grants=[], now=NOW)


def test_operations_that_read_data_need_a_purpose() -> None:
    with pytest.raises(PolicyError):
        decide(Principal("b", "builder"), "unseal", None, contributor=OWNER, grants=[], now=NOW)
    with pytest.raises(PolicyError):
        decide(Principal("b", "builder"), "peek", MT, contributor=OWNER, grants=[], now=NOW)


def _grant(**kw: object) -> Grant:
    base: dict[str, object] = dict(
        grant_id="g",
        principal="b",
        role="builder",
        purpose=MT,
        data_class="sealed-batches",
        expires=NOW + timedelta(days=1),
        created=NOW - timedelta(days=1),
        created_by="s",
    )
    base.update(kw)
    return Grant(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("grant_kw", "allowed"),
    [
        ({}, True),
        ({"expires": NOW}, False),  # expiry is exclusive
        ({"created": NOW + timedelta(seconds=1), "expires": NOW + timedelta(days=1)}, False),
        ({"revoked": NOW - timedelta(seconds=1)}, False),
        ({"principal": "someone-else"}, False),
        ({"contributor": OTHER}, False),
        ({"contributor": OWNER}, True),
        ({"purpose": DR}, False),
    ],
)
def test_grant_conditions(grant_kw: dict[str, object], allowed: bool) -> None:
    d = decide(
        Principal("b", "builder"),
        "unseal",
        MT,
        contributor=OWNER,
        grants=[_grant(**grant_kw)],
        now=NOW,
    )
    assert d.allowed is allowed, d.reason


@pytest.mark.parametrize(
    "kw",
    [
        {"expires": None},
        {"expires": datetime(2027, 1, 1)},  # naive: no time zone
        {"role": "operator", "data_class": "sealed-batches"},
        {"role": "researcher", "data_class": "sealed-batches"},
        {"purpose": "anything"},
        {"expires": NOW - timedelta(days=2)},  # before creation
        {"expires": NOW + timedelta(days=400)},  # a year-plus grant is no expiry at all
    ],
)
def test_malformed_grants_cannot_exist(kw: dict[str, object]) -> None:
    with pytest.raises((PolicyError, TypeError, AttributeError)):
        _grant(**kw)


@pytest.mark.parametrize(
    ("kw", "ok"),
    [
        ({}, True),
        ({"approvers": ("a", "a")}, False),
        ({"approvers": ("a", "")}, False),
        ({"justification": "  "}, False),
        ({"expires": NOW + timedelta(hours=24)}, True),
        ({"expires": NOW + timedelta(hours=24, seconds=1)}, False),
        ({"expires": NOW}, False),
    ],
)
def test_break_glass_shape(kw: dict[str, object], ok: bool) -> None:
    base: dict[str, object] = dict(
        grant_id="bg",
        principal="carol",
        contributor=OWNER,
        approvers=("a", "b"),
        justification="incident 7",
        opened=NOW,
        expires=NOW + timedelta(hours=4),
    )
    base.update(kw)
    if ok:
        BreakGlass(**base)  # type: ignore[arg-type]
    else:
        with pytest.raises(PolicyError):
            BreakGlass(**base)  # type: ignore[arg-type]


def test_break_glass_is_for_one_steward_and_one_contributor() -> None:
    bg = BreakGlass(
        grant_id="bg",
        principal="carol",
        contributor=OWNER,
        approvers=("a", "b"),
        justification="x",
        opened=NOW,
        expires=NOW + timedelta(hours=1),
    )
    carol, dave = Principal("carol", "steward"), Principal("dave", "steward")
    assert decide(carol, "unseal", SI, contributor=OWNER, grants=[bg], now=NOW).allowed
    assert not decide(dave, "unseal", SI, contributor=OWNER, grants=[bg], now=NOW).allowed
    assert not decide(carol, "unseal", SI, contributor=OTHER, grants=[bg], now=NOW).allowed
    assert not decide(
        carol, "unseal", SI, contributor=OWNER, grants=[bg], now=NOW + timedelta(hours=1)
    ).allowed
