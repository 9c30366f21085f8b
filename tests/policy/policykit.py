"""The expected authorization matrix, written out independently of the policy rules."""

from __future__ import annotations

import itertools

MT, DR, CA, SI = "model-training", "dataset-review", "contributor-access", "security-investigation"
ANY = "*"  # any purpose (operations that take none)

# (role, operation, purpose, whose) -> how it is allowed: "always", "grant" or "break-glass".
# Every cell not listed is denied, with or without grants.
ALLOWED: dict[tuple[str, str, str, str], str] = {}


def allow(
    role: str,
    op: str,
    purposes: tuple[str, ...],
    how: str = "always",
    whose: tuple[str, ...] = ("own", "other"),
) -> None:
    for p, w in itertools.product(purposes, whose):
        ALLOWED[(role, op, p, w)] = how


allow("contributor", "unseal", (CA,), whose=("own",))
allow("contributor", "read-feed", (CA,), whose=("own",))
allow("contributor", "erase-contributor", (ANY,), whose=("own",))
allow("builder", "unseal", (MT,), "grant")
allow("builder", "read-dataset", (MT, DR))
allow("researcher", "read-dataset", (MT, DR), "grant")
allow("steward", "unseal", (SI,), "break-glass")
allow("steward", "read-dataset", (DR,))
allow("steward", "read-feed", (SI, CA))
allow("steward", "read-audit", (SI,))
allow("auditor", "read-audit", (SI,))
allow("auditor", "read-feed", (SI,))
for role in ("auditor", "steward", "operator"):
    allow(role, "verify-audit", (ANY,))
for op in (
    "create-grant",
    "open-break-glass",
    "set-legal-hold",
    "erase-contributor",
    "pull-kill-switch",
):
    allow("steward", op, (ANY,))
for role in ("steward", "operator"):
    allow(role, "run-maintenance", (ANY,))
for role in ("steward", "operator", "auditor"):
    allow(role, "scan-exposure", (ANY,))
