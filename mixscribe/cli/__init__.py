"""The `mixscribe` command. Thin: parses arguments, imports the stage it runs only when it runs it."""

from __future__ import annotations

import argparse
import os
import sys

from mixscribe.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def _log_dir(args: argparse.Namespace):
    """Where a command that runs Ray or MLflow keeps its log file: beside its outputs (a local folder)."""
    from pathlib import Path

    command = args.command
    if command == "pipeline":
        return Path(args.workdir) / (args.name or Path(args.config).stem) / "logs"
    if command in ("train", "evaluate", "baseline", "study"):
        return Path(args.workdir) / "logs"
    if command in ("synth", "chorales"):
        return Path(args.out) / "logs" if "://" not in args.out else Path("mixscribe-logs")
    return None  # the others run no Ray: warnings stay on the console


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mixscribe.console import Console
    from mixscribe.errors import MixscribeError
    from mixscribe.raycluster import VERBOSE_ENV, prepare_local_environment

    if args.command != "submit":  # a job server's client keeps the user's own Ray settings
        prepare_local_environment()  # before any stage imports Ray: Ray reads these settings once, on import
    if args.verbose:  # every command takes --verbose
        os.environ[VERBOSE_ENV] = "1"
    console = Console(_log_dir(args), args.command, verbose=args.verbose)
    try:
        from mixscribe.cli.commands import COMMANDS

        return COMMANDS[args.command](args)
    except MixscribeError as exc:
        print(f"mixscribe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mixscribe: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _report_ray_error(exc, console)
    finally:
        where = console.close()
        if where:
            print(where)  # stdout: stderr holds nothing but an error's one line


def _report_ray_error(exc: Exception, console) -> int:
    """An error that came out of a Ray task, actor or training worker: the original error on one line
    (its traceback goes to the log file); anything else is a bug and keeps its traceback."""
    import logging

    from mixscribe.errors import MixscribeError
    from mixscribe.raycluster import innermost_error, unwrap_ray_error

    original = unwrap_ray_error(exc)
    if isinstance(original, MixscribeError):
        print(f"mixscribe: error: {original}", file=sys.stderr)
        return 2
    inner = innermost_error(exc)
    if inner is None:
        raise exc
    logging.getLogger("mixscribe").error("failed inside Ray", exc_info=exc)
    text = " ".join(str(inner).split()) or "(no message)"
    print(f"mixscribe: error: {type(inner).__name__} inside a Ray task: {text[:400]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
