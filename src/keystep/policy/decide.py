"""The pure access decision: who may do what, for which purpose, to whose data, right now."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from keystep.policy.model import (
    CONTRIBUTOR,
    OPERATIONS,
    RULES,
    BreakGlass,
    Grant,
    PolicyError,
    Principal,
    check_purpose,
    check_role,
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    grant_id: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


def decide(
    principal: Principal,
    operation: str,
    purpose: str | None,
    *,
    contributor: str | None,
    grants: Iterable[Grant | BreakGlass],
    now: datetime,
) -> Decision:
    """Decide one request. Raises PolicyError for anything outside the fixed vocabulary.

    ``contributor`` is the pseudonym whose data the operation touches (None: no one's).
    ``grants`` may hold every grant in the system; only those naming this principal count.
    """
    check_role(principal.role)
    op = OPERATIONS.get(operation)
    if op is None:
        raise PolicyError(f"unknown operation {operation!r}")
    if purpose is not None:
        check_purpose(purpose)
    elif op.needs_purpose:
        raise PolicyError(f"{operation} needs a purpose")
    if now.tzinfo is None:
        raise PolicyError("now must be timezone-aware")

    rules = [r for r in RULES if r.role == principal.role and r.operation == operation]
    if not rules:
        return Decision(False, f"role {principal.role} may never {operation}")
    if op.needs_purpose:
        rules = [r for r in rules if r.purposes is not None and purpose in r.purposes]
        if not rules:
            return Decision(False, f"role {principal.role} may not {operation} for {purpose}")

    grants = tuple(grants)
    reasons: list[str] = []
    for rule in rules:
        if rule.scope == "role":
            return Decision(True, f"role {principal.role} may {operation}")
        if rule.scope == "own":
            own = principal.role == CONTRIBUTOR and principal.pseudonym is not None
            if own and contributor == principal.pseudonym:
                return Decision(True, "a contributor's own data")
            reasons.append("contributors reach only their own data")
        elif rule.scope == "grant":
            assert op.data_class is not None and purpose is not None
            for g in grants:
                if (
                    isinstance(g, Grant)
                    and g.covers(principal, purpose, op.data_class, contributor)
                    and g.active(now)
                ):
                    return Decision(
                        True, f"grant {g.grant_id} until {g.expires.isoformat()}", g.grant_id
                    )
            reasons.append(f"no active grant for {principal.name} / {purpose}")
        elif rule.scope == "break-glass":
            for g in grants:
                if (
                    isinstance(g, BreakGlass)
                    and g.principal == principal.name
                    and g.contributor == contributor
                    and purpose in g.purposes
                    and g.active(now)
                ):
                    return Decision(
                        True,
                        f"break-glass {g.grant_id} approved by "
                        f"{g.approvers[0]} and {g.approvers[1]}",
                        g.grant_id,
                    )
            reasons.append("no open break-glass for this steward and contributor")
    return Decision(False, "; ".join(reasons))
