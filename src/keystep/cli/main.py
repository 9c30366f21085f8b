"""Entry point: parses the DESIGN.md command-line contract and dispatches lazily.

Handlers live in one module per command group and are imported only when their command
runs, so `keystep record` never imports the server or dataset stacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Final

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2


class UsageError(Exception):
    """Bad usage detected after parsing (exit status 2)."""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a subcommand's absent --home from overwriting one given earlier.
    common.add_argument("--home", default=argparse.SUPPRESS, help="data home (KEYSTEP_HOME)")
    return common


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: str,
    help_text: str,
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, parents=[_common()])
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keystep",
        description="Consent-first recording of computer use, sealed at the source.",
    )
    parser.add_argument(
        "--home", default=None, help="data home (default: KEYSTEP_HOME or ~/.keystep)"
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = _add(sub, "init", "keystep.cli.setup:run_init", "create an embedded deployment")
    p.add_argument("--manifest", help="collection manifest YAML (default: the shipped one)")
    p.add_argument("--contributor", help="contributor id (default: the login name)")
    p.add_argument("--vault", help="vault key-store folder, outside the home")
    p.add_argument(
        "--passphrase",
        action="store_true",
        help="protect the vault with a passphrase (KEYSTEP_PASSPHRASE or a prompt)",
    )

    consent = _add(sub, "consent", "", "show, accept or withdraw consent to the manifest")
    csub = consent.add_subparsers(dest="consent_command", metavar="ACTION")
    csub.required = True
    p = _add(csub, "show", "keystep.cli.consent:run_show", "print the manifest in plain language")
    p.add_argument("--manifest", help="show this manifest file instead of the one in force")
    p.add_argument("--yaml", action="store_true", help="print the YAML document itself")
    p = _add(csub, "accept", "keystep.cli.consent:run_accept", "consent to the manifest in force")
    p.add_argument("--yes", action="store_true", help="confirm without a prompt")
    p.add_argument("--manifest", help="adopt this newer manifest version and consent to it")
    p = _add(
        csub,
        "withdraw",
        "keystep.cli.consent:run_withdraw",
        "withdraw consent; stops recording at once",
    )
    p.add_argument("--yes", action="store_true", help=argparse.SUPPRESS)
    _add(csub, "receipt", "keystep.cli.consent:run_receipt", "print and verify the consent receipt")

    p = _add(sub, "record", "keystep.cli.recording:run_record", "record in the foreground")
    p.add_argument("--display", help="X display, e.g. :1 (default: $DISPLAY)")
    p.add_argument("--duration", type=float, help="stop after SECONDS")

    p = _add(sub, "pause", "keystep.cli.recording:run_pause", "pause recording (works offline)")
    p.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="e.g. 90s, 30m, 2h, 1d (default: until resume)",
    )
    _add(sub, "resume", "keystep.cli.recording:run_resume", "resume recording")
    p = _add(sub, "status", "keystep.cli.recording:run_status", "what keystep is doing now")
    p.add_argument("--json", action="store_true", help="machine-readable, versioned")
    p = _add(sub, "forget", "keystep.cli.recording:run_forget", "delete what was recorded recently")
    p.add_argument("--last", required=True, metavar="DURATION", help="e.g. 10m")
    p = _add(
        sub, "exclude", "keystep.cli.recording:run_exclude", "never record an app (local addition)"
    )
    p.add_argument("--app", help="regular expression on the window's app class")
    p.add_argument("--title", help="regular expression on the window title")
    p.add_argument("--list", action="store_true", help="list the exclusions in force")
    p.add_argument("--remove", metavar="LABEL", help="remove a local exclusion")
    p.add_argument("--label", help="a name for this exclusion")

    p = _add(sub, "export", "keystep.cli.datasets:run_export", "build a trajectory dataset")
    p.add_argument("--out", help="output folder")
    p.add_argument("--format", choices=("parquet", "hf", "webdataset"), default="parquet")
    p.add_argument("--mine", action="store_true", help="your own data (purpose contributor-access)")
    p.add_argument(
        "--rebuild", metavar="DATASET", help="rebuild a dataset without erased contributors"
    )
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument(
        "--split-on-app", action="store_true", help="start a new episode at app switches"
    )
    p.add_argument(
        "--idle-minutes", type=float, default=5.0, help="split episodes after this idle time"
    )
    p.add_argument(
        "--image-format",
        choices=("jpeg", "webp", "png"),
        default="jpeg",
        help="how screenshots are stored (default jpeg q95 4:4:4; webp/png lossless)",
    )

    audit = _add(sub, "audit", "", "verify and read the audit log; scan for exposure")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    asub.required = True
    p = _add(
        asub,
        "verify",
        "keystep.cli.trust:run_audit_verify",
        "verify the hash chain and checkpoints",
    )
    p = _add(
        asub,
        "exposure",
        "keystep.cli.trust:run_audit_exposure",
        "scan every store; exit 1 on any finding",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--db", help="also scan this PostgreSQL database URL")
    p = _add(asub, "log", "keystep.cli.trust:run_audit_log", "who accessed whose data")
    p.add_argument("--contributor", metavar="ID", help="one contributor's access feed")
    p.add_argument("--json", action="store_true")

    p = _add(sub, "erase", "keystep.cli.trust:run_erase", "erase a contributor cryptographically")
    p.add_argument("--contributor", metavar="ID", help="default: yourself")
    p.add_argument("--yes", action="store_true", help="confirm without a prompt")

    p = _add(
        sub, "maintain", "keystep.cli.trust:run_maintain", "retention: destroy expired period keys"
    )
    p.add_argument("--now", help=argparse.SUPPRESS)

    p = _add(sub, "serve", "keystep.cli.service:run_serve", "run the collector service")
    p.add_argument("--db", help="database URL (postgresql://... or sqlite:///...)")
    p.add_argument("--blobs", help="blob folder or s3://bucket/prefix")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8420)
    p.add_argument("--vault", help="vault key-store folder (default: KEYSTEP_VAULT or home)")
    p.add_argument("--tokens", metavar="FILE", help="staff API tokens (JSON) or KEYSTEP_API_TOKENS")
    p.add_argument("--state", metavar="DIR", help="the collectors' shared lease/token keys")
    p.add_argument("--lease-ttl", type=float, default=30.0, metavar="SECONDS")
    p.add_argument("--max-batch-bytes", type=int, default=64 * 1024 * 1024, metavar="N")
    p = _add(sub, "agent", "keystep.cli.service:run_agent", "enrolled device: record and upload")
    p.add_argument("--server", required=True, metavar="URL")
    p.add_argument("--enroll-code", help="one-time enrollment code from a steward")
    p.add_argument("--display", help="X display, e.g. :1")
    p.add_argument("--duration", type=float, help="stop after SECONDS")
    p.add_argument("--no-record", action="store_true", help="hold the lease and upload only")

    fleet = _add(sub, "fleet", "", "steward: the fleet kill switch")
    fsub = fleet.add_subparsers(dest="fleet_command", metavar="ACTION")
    fsub.required = True
    for name, verb in (
        ("halt", "stop recording on every device now"),
        ("resume", "allow recording again"),
    ):
        p = _add(fsub, name, f"keystep.cli.service:run_fleet_{name}", verb)
        p.add_argument("--server", metavar="URL", help="collector URL (default: the enrolled one)")
        p.add_argument("--reason", help="recorded in the audit log")
        p.add_argument("--token", help="steward API token (default: KEYSTEP_TOKEN)")

    p = _add(sub, "replay", "keystep.cli.datasets:run_replay", "re-perform an episode on a display")
    p.add_argument("--episode", required=True, metavar="ID")
    p.add_argument("--display", required=True, metavar=":N")
    p.add_argument("--dataset", metavar="DIR", help="exported dataset holding the episode")
    p.add_argument("--speed", type=float, default=1.0)
    p = _add(sub, "label", "keystep.cli.datasets:run_label", "attach a task label to an episode")
    p.add_argument("--episode", metavar="ID")
    p.add_argument("--task", metavar="TEXT")
    p.add_argument("--list", action="store_true")

    from keystep.cli.trust import add_grant_commands

    add_grant_commands(sub, _add)

    ev = _add(sub, "eval", "", "evaluations")
    esub = ev.add_subparsers(dest="eval_command", metavar="WHAT")
    esub.required = True
    p = _add(
        esub,
        "redaction",
        "keystep.cli.eval_redaction:run",
        "measure redaction on a synthetic corpus",
    )
    p.add_argument("--cases", type=int, default=400, help="typed-text cases")
    p.add_argument("--screens", type=int, default=24, help="rendered screens")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--bad-screens", type=int, default=0, help="extra screens of bad input")
    p.add_argument("--json", action="store_true")
    return parser


def _version() -> str:
    from keystep import __version__

    return f"keystep {__version__}"


def _resolve(handler: str) -> Callable[[argparse.Namespace], int]:
    module, _, func = handler.partition(":")
    fn: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), func)
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _resolve(args.handler)(args)
    except UsageError as exc:
        print(f"keystep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("KEYSTEP_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"keystep: error: {msg}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
