"""Fixtures for the vault tests (defined in vaultkit, which the tests also import)."""

from vaultkit import any_vault, builder_grant, clock, device, vault

__all__ = ["any_vault", "builder_grant", "clock", "device", "vault"]
