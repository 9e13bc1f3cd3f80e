"""The `hub` console script: one sub-command per module in hub/entrypoints/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines `register(subparsers)`, which adds its sub-command(s) and sets `func`
# (a callable taking the parsed args and returning the exit code) as the parser default.
_COMMAND_MODULES = (
    "validate",
    "serve",
    "worker",
    "migrate",
    "routes",
    "parties",
    "deadletters",
    "replay",
    "retention",
    "amqp",
    "keys",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description="iStandaarden routing hub")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"hub.entrypoints.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors; keep that code
        return int(exc.code) if isinstance(exc.code, int) else 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
