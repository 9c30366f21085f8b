"""The vault: the one component that turns sealed batches back into plaintext."""

from keystep.vault.base import (
    AccessDenied,
    AuditUnavailable,
    BadEnvelope,
    SealingKey,
    Unsealed,
    Vault,
    VaultError,
    default_vault_dir,
    open_local_vault,
)

__all__ = [
    "AccessDenied",
    "AuditUnavailable",
    "BadEnvelope",
    "SealingKey",
    "Unsealed",
    "Vault",
    "VaultError",
    "default_vault_dir",
    "open_local_vault",
]
