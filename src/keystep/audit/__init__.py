"""The audit log: every access and policy change as a hash-chained, signed record."""
