"""Shared fixtures: one Redactor per module, since constructing one starts OCR workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keystep.redact import RedactionSettings, Redactor

DIRECTORY = ("Priya Raman", "John Smith", "Ana María López")


@pytest.fixture(scope="module")
def redactor() -> Iterator[Redactor]:
    with Redactor(RedactionSettings(names=DIRECTORY), episode_salt=b"episode-1") as r:
        yield r


@pytest.fixture(scope="module")
def text_redactor() -> Iterator[Redactor]:
    with Redactor(RedactionSettings(names=DIRECTORY, screen=False), episode_salt=b"episode-1") as r:
        yield r
