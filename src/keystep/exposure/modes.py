"""Permission checks: every folder 0700 and every file 0600, from the home to the key store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from keystep.exposure.base import Check, Finding, ScanContext, mode_of, walk

SQLITE_SUFFIXES: Final = (".sqlite", ".db", ".sqlite3")
SQLITE_SIDECARS: Final = ("-wal", "-shm", "-journal")


def _private_tree(check: Check, root: Path, what: str) -> Iterator[Finding]:
    for p in walk(root):
        if p.is_symlink():
            yield check.finding(
                p,
                f"a symlink inside the {what} (may point anywhere)",
                f"replace it with the real file or folder: rm {p}",
            )
            continue
        mode = mode_of(p)
        if p.is_dir() and mode & 0o077:
            yield check.finding(
                p, f"{what} folder is mode {mode:04o}, readable by others", f"chmod 700 {p}"
            )
        elif p.is_file() and mode & 0o077:
            yield check.finding(
                p, f"{what} file is mode {mode:04o}, readable by others", f"chmod 600 {p}"
            )


class HomeModesCheck(Check):
    """The data home and everything in it: outbox, blobs, device key, state, datasets."""

    name = "home-modes"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        if ctx.home is None:
            return
        if not ctx.home.exists():
            yield self.finding(ctx.home, "the home does not exist", "keystep init --home DIR")
            return
        yield from _private_tree(self, ctx.home, "home")


class VaultModesCheck(Check):
    """The key store folder: key store, master secret record or key file, audit log."""

    name = "vault-modes"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        if ctx.vault_dir is None or not ctx.vault_dir.exists():
            return
        yield from _private_tree(self, ctx.vault_dir, "key store")


class VaultLocationCheck(Check):
    """The key store must live outside the data home, or a copy of the home carries keys."""

    name = "vault-location"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        if ctx.home is None:
            return
        if ctx.vault_dir is None:
            return
        home = ctx.home.resolve()
        vault = ctx.vault_dir.resolve()
        if vault == home or home in vault.parents:
            yield self.finding(
                vault,
                "the vault key store is inside the data home",
                "move the vault folder outside the home and update config.json",
            )
        for name in ("keystore.db", "master.key", "master.json"):
            for p in walk(ctx.home):
                if p.name == name and p.is_file() and home not in vault.parents:
                    yield self.finding(
                        p,
                        f"a vault file ({name}) inside the data home",
                        f"move it to the vault folder or remove it: rm {p}",
                    )


class SqliteModesCheck(Check):
    """Every SQLite database file and its -wal/-shm/-journal sidecars: 0600."""

    name = "sqlite-modes"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        for root in (ctx.home, ctx.vault_dir):
            if root is None:
                continue
            for p in walk(root):
                base = p.name
                for s in SQLITE_SIDECARS:
                    base = base.removesuffix(s)
                if p.is_file() and base.endswith(SQLITE_SUFFIXES) and mode_of(p) & 0o077:
                    yield self.finding(
                        p, f"database file is mode {mode_of(p):04o}", f"chmod 600 {p}"
                    )


class TempModesCheck(Check):
    """keystep's entries in the shared temp folder and the spill folders: private or absent."""

    name = "temp-modes"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        for entry in ctx.temp_entries():
            for p in walk(entry):
                if not p.is_symlink() and mode_of(p) & 0o077:
                    yield self.finding(
                        p,
                        f"keystep temp entry is mode {mode_of(p):04o}",
                        f"remove it (keystep keeps nothing in temp): rm -r {entry}",
                    )
        for d in ctx.spill_dirs:
            if d.exists() and not d.is_symlink() and mode_of(d) & 0o077:
                yield self.finding(d, f"spill folder is mode {mode_of(d):04o}", f"chmod 700 {d}")
