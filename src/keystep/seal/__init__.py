"""Sealing at the source: the batch envelope v1 (DESIGN.md, formats)."""
