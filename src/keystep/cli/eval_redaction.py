"""`keystep eval redaction`: measure redaction on the synthetic corpus and print the table."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `keystep eval redaction` (main.py declares the same ones)."""
    parser.add_argument("--cases", type=int, default=400, help="typed-text cases")
    parser.add_argument("--screens", type=int, default=24, help="rendered screens")
    parser.add_argument(
        "--bad-screens", type=int, default=0, help="extra screens in tiny and huge fonts"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON); exit 1 when a target of issue 3 is missed."""
    from keystep.redact import evaluate

    if args.cases < 0 or args.screens < 0 or getattr(args, "bad_screens", 0) < 0:
        print("keystep: --cases and --screens must not be negative", file=sys.stderr)
        return 2
    report = evaluate.run(
        cases=args.cases,
        screen_count=args.screens,
        seed=args.seed,
        bad_screens=getattr(args, "bad_screens", 0),
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        print(report.table())
    failures = report.failures()
    if failures:
        print(f"keystep: redaction targets missed: {'; '.join(failures)}", file=sys.stderr)
        return 1
    return 0
