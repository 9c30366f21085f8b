"""Helpers shared by command modules: the home, the manifest in force, prompts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keystep.home import Home, HomeError, resolve_home
from keystep.model.manifest import Manifest, ManifestError, load_manifest


def home_of(args: argparse.Namespace, *, must_exist: bool = True) -> Home:
    home = resolve_home(getattr(args, "home", None))
    if must_exist and not home.exists():
        raise HomeError(f"{home.root} is not a keystep home (run: keystep init --home {home.root})")
    return home


def manifest_in_force(home: Home) -> Manifest:
    try:
        text = home.manifest_file.read_text("utf-8")
    except OSError as exc:
        raise ManifestError(
            f"cannot read the manifest {home.manifest_file}: {exc.strerror}"
        ) from exc
    return load_manifest(text)


def read_manifest_file(path: str | Path) -> Manifest:
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from exc
    return load_manifest(text)


def interactive() -> bool:
    """Nothing prompts when standard input is not a terminal (DESIGN.md, command line)."""
    return sys.stdin.isatty()


def confirm(question: str) -> bool:
    answer = input(f"{question} Type 'yes' to confirm: ")
    return answer.strip().lower() == "yes"
