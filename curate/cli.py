"""The `curate` command: each subcommand parses, calls one library function and prints a short table.

Errors Curate raises on purpose print one line to stderr and exit 2; `--verbose` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from curate.errors import CurateError

console = Console()
err_console = Console(stderr=True)

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(
    name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Handler], Handler]:
    """Register a subcommand: its help line, its arguments and the handler that runs it."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help_text, add_arguments, handler)
        return handler

    return register


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        err_console.print(f"curate: error: {message} (see '{self.prog} --help')", highlight=False)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per registered command."""
    parser = _Parser(
        prog="curate",
        description="Curate raw data shards into a filtered, weighted training mix with its evidence.",
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad arguments, input or config)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _, _, handler = COMMANDS[args.command]
    try:
        return handler(args)
    except CurateError as exc:
        if args.verbose:
            raise
        err_console.print(f"curate {args.command}: error: {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("curate: interrupted; rerun the same command to resume.")
        return 130


# Subcommands below: each imports what it needs inside its handler so `curate --help` stays quick.

# --- ingest, report, demo (issue 3) ---

# --- dedup (issue 4) ---

# --- embed, score (issues 5, 10) ---

# --- plan (issue 6) ---

# --- mix (issue 7) ---

# --- run (issue 8) ---


if __name__ == "__main__":
    sys.exit(main())
