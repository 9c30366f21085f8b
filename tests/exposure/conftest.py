"""Fixtures for the exposure tests (defined in exposurekit)."""

from exposurekit import deployment

__all__ = ["deployment"]
