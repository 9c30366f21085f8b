"""Policy as data: roles, operations, principals, grants and break-glass approvals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from keystep.model.manifest import PURPOSES

BREAK_GLASS_MAX: Final = timedelta(hours=24)
# A grant that runs longer than a year is a grant "without expiry" in all but name.
GRANT_MAX: Final = timedelta(days=366)


class PolicyError(ValueError):
    """A schema error: an unknown role, operation, purpose or data class, or a malformed grant.

    Not a deny: a request naming something outside the fixed vocabulary is a bug in the
    caller, and answering it with "denied" would hide the bug.
    """


@dataclass(frozen=True)
class Role:
    name: str
    description: str


CONTRIBUTOR: Final = "contributor"
STEWARD: Final = "steward"
BUILDER: Final = "builder"
RESEARCHER: Final = "researcher"
OPERATOR: Final = "operator"
AUDITOR: Final = "auditor"

# HR and managers are deliberately absent: there is no role for them, so nothing to grant.
ROLES: Final[dict[str, Role]] = {
    r.name: r
    for r in (
        Role(CONTRIBUTOR, "the person recorded: own data only"),
        Role(
            STEWARD,
            "privacy office: manifests, grants, releases, kill switch; raw data only "
            "through break-glass",
        ),
        Role(BUILDER, "dataset builder service: unseals for model-training under a grant"),
        Role(RESEARCHER, "reads released, redacted, pseudonymous datasets; unseals nothing"),
        Role(OPERATOR, "runs the services; reads no data"),
        Role(AUDITOR, "reads and verifies the audit log; reads no data"),
    )
}

SEALED_BATCHES: Final = "sealed-batches"
OWN_BATCHES: Final = "own-batches"
RELEASED_DATASETS: Final = "released-datasets"
AUDIT_LOG: Final = "audit-log"
DATA_CLASSES: Final[tuple[str, ...]] = (SEALED_BATCHES, OWN_BATCHES, RELEASED_DATASETS, AUDIT_LOG)


@dataclass(frozen=True)
class Operation:
    """Something a principal asks to do. ``data_class`` is what it reads (None: reads no data)."""

    name: str
    data_class: str | None
    description: str

    @property
    def needs_purpose(self) -> bool:
        return self.data_class is not None


UNSEAL: Final = "unseal"
READ_DATASET: Final = "read-dataset"
READ_AUDIT: Final = "read-audit"
READ_FEED: Final = "read-feed"
VERIFY_AUDIT: Final = "verify-audit"
CREATE_GRANT: Final = "create-grant"
OPEN_BREAK_GLASS: Final = "open-break-glass"
SET_LEGAL_HOLD: Final = "set-legal-hold"
ERASE: Final = "erase-contributor"
PULL_KILL_SWITCH: Final = "pull-kill-switch"
RUN_MAINTENANCE: Final = "run-maintenance"
SCAN_EXPOSURE: Final = "scan-exposure"

OPERATIONS: Final[dict[str, Operation]] = {
    o.name: o
    for o in (
        Operation(UNSEAL, SEALED_BATCHES, "open a sealed batch (plaintext)"),
        Operation(READ_DATASET, RELEASED_DATASETS, "read a released dataset"),
        Operation(READ_AUDIT, AUDIT_LOG, "read the whole audit log"),
        Operation(READ_FEED, AUDIT_LOG, "read one contributor's access feed"),
        Operation(VERIFY_AUDIT, None, "check the audit chain and checkpoints"),
        Operation(CREATE_GRANT, None, "grant a principal access for a purpose"),
        Operation(OPEN_BREAK_GLASS, None, "approve time-boxed raw access"),
        Operation(SET_LEGAL_HOLD, None, "suspend retention expiry for named periods"),
        Operation(ERASE, None, "destroy a contributor's keys and data"),
        Operation(PULL_KILL_SWITCH, None, "stop recording fleet-wide"),
        Operation(RUN_MAINTENANCE, None, "expire retention periods"),
        Operation(SCAN_EXPOSURE, None, "scan stores for exposure"),
    )
}

# How a rule is satisfied: "own" = the contributor is the principal; "grant" = an active
# Grant; "break-glass" = an active BreakGlass naming the principal; "role" = the role alone.
SCOPES: Final = ("own", "grant", "break-glass", "role")


@dataclass(frozen=True)
class Rule:
    role: str
    operation: str
    purposes: frozenset[str] | None  # None: the operation takes no purpose
    scope: str


def _p(*names: str) -> frozenset[str]:
    return frozenset(names)


# The whole access policy. Anything not listed here is denied.
RULES: Final[tuple[Rule, ...]] = (
    Rule(CONTRIBUTOR, UNSEAL, _p("contributor-access"), "own"),
    Rule(CONTRIBUTOR, READ_FEED, _p("contributor-access"), "own"),
    Rule(CONTRIBUTOR, ERASE, None, "own"),
    Rule(BUILDER, UNSEAL, _p("model-training"), "grant"),
    Rule(BUILDER, READ_DATASET, _p("model-training", "dataset-review"), "role"),
    Rule(RESEARCHER, READ_DATASET, _p("model-training", "dataset-review"), "grant"),
    Rule(STEWARD, UNSEAL, _p("security-investigation"), "break-glass"),
    Rule(STEWARD, READ_DATASET, _p("dataset-review"), "role"),
    Rule(STEWARD, READ_FEED, _p("security-investigation", "contributor-access"), "role"),
    Rule(STEWARD, READ_AUDIT, _p("security-investigation"), "role"),
    Rule(AUDITOR, READ_AUDIT, _p("security-investigation"), "role"),
    Rule(AUDITOR, READ_FEED, _p("security-investigation"), "role"),
    Rule(AUDITOR, VERIFY_AUDIT, None, "role"),
    Rule(STEWARD, VERIFY_AUDIT, None, "role"),
    Rule(OPERATOR, VERIFY_AUDIT, None, "role"),
    Rule(STEWARD, CREATE_GRANT, None, "role"),
    Rule(STEWARD, OPEN_BREAK_GLASS, None, "role"),
    Rule(STEWARD, SET_LEGAL_HOLD, None, "role"),
    Rule(STEWARD, ERASE, None, "role"),
    Rule(STEWARD, PULL_KILL_SWITCH, None, "role"),
    Rule(STEWARD, RUN_MAINTENANCE, None, "role"),
    Rule(OPERATOR, RUN_MAINTENANCE, None, "role"),
    Rule(STEWARD, SCAN_EXPOSURE, None, "role"),
    Rule(OPERATOR, SCAN_EXPOSURE, None, "role"),
    Rule(AUDITOR, SCAN_EXPOSURE, None, "role"),
)

# Which (role, data class) pairs a grant may ever name: a grant cannot widen the rules.
GRANTABLE: Final[frozenset[tuple[str, str]]] = frozenset(
    {(BUILDER, SEALED_BATCHES), (RESEARCHER, RELEASED_DATASETS)}
)


def check_role(role: str) -> None:
    if role not in ROLES:
        raise PolicyError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")


def check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise PolicyError(f"unknown purpose {purpose!r} (purposes: {', '.join(PURPOSES)})")


def check_data_class(data_class: str) -> None:
    if data_class not in DATA_CLASSES:
        raise PolicyError(f"unknown data class {data_class!r}")


@dataclass(frozen=True)
class Principal:
    """Who asks. ``pseudonym`` is set (by the vault) for contributors: their own pseudonym."""

    name: str
    role: str
    pseudonym: str | None = None

    def __post_init__(self) -> None:
        check_role(self.role)
        if not self.name:
            raise PolicyError("a principal needs a name")


def _aware(t: datetime, what: str) -> None:
    if t.tzinfo is None:
        raise PolicyError(f"{what} must be timezone-aware")


@dataclass(frozen=True)
class Grant:
    """Access for one principal, one purpose, one data class, until ``expires`` (required).

    ``contributor`` narrows the grant to one pseudonym; None covers every contributor.
    """

    grant_id: str
    principal: str
    role: str
    purpose: str
    data_class: str
    expires: datetime
    created: datetime
    created_by: str
    contributor: str | None = None
    revoked: datetime | None = None

    def __post_init__(self) -> None:
        check_role(self.role)
        check_purpose(self.purpose)
        check_data_class(self.data_class)
        _aware(self.expires, "grant expiry")
        _aware(self.created, "grant creation time")
        if (self.role, self.data_class) not in GRANTABLE:
            raise PolicyError(f"role {self.role} cannot be granted {self.data_class}")
        if not self.created < self.expires <= self.created + GRANT_MAX:
            raise PolicyError(f"a grant expires after it is created, within {GRANT_MAX.days} days")

    def active(self, now: datetime) -> bool:
        return self.created <= now < self.expires and (self.revoked is None or now < self.revoked)

    def covers(
        self, principal: Principal, purpose: str, data_class: str, contributor: str | None
    ) -> bool:
        return (
            self.principal == principal.name
            and self.role == principal.role
            and self.purpose == purpose
            and self.data_class == data_class
            and (self.contributor is None or self.contributor == contributor)
        )


@dataclass(frozen=True)
class BreakGlass:
    """Raw access for one steward to one contributor: two different stewards approved it,
    with a written justification, for at most 24 hours."""

    grant_id: str
    principal: str
    contributor: str
    approvers: tuple[str, str]
    justification: str
    opened: datetime
    expires: datetime
    closed: datetime | None = None
    purposes: frozenset[str] = field(default=frozenset({"security-investigation"}))

    def __post_init__(self) -> None:
        _aware(self.opened, "break-glass opening time")
        _aware(self.expires, "break-glass expiry")
        a, b = self.approvers
        if not a or not b or a == b:
            raise PolicyError("break-glass needs two different stewards")
        if not self.justification.strip():
            raise PolicyError("break-glass needs a written justification")
        if not self.opened < self.expires <= self.opened + BREAK_GLASS_MAX:
            raise PolicyError("break-glass lasts more than zero and at most 24 hours")
        for p in self.purposes:
            check_purpose(p)

    def active(self, now: datetime) -> bool:
        return self.opened <= now < self.expires and (self.closed is None or now < self.closed)
