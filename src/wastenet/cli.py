"""The ``wastenet`` command: thin parsing; every stage lives in its own package.

Each stage module named in COMMAND_MODULES has ``register(subparsers)`` that adds its
subcommands and sets ``func``; modules import their heavy dependencies lazily.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from wastenet import __version__
from wastenet.errors import ExitCode, WasteNetError

COMMAND_MODULES = (
    "wastenet.data.commands",
    "wastenet.train.commands",
    "wastenet.evaluate.commands",
    "wastenet.evaluate.shift_commands",
    "wastenet.evaluate.model_gate_commands",
    "wastenet.accelerate.commands",
    "wastenet.runtime.commands",
    "wastenet.runtime.review_commands",
    "wastenet.runtime.update_commands",
    "wastenet.analysis.power_commands",
    "wastenet.analysis.report_commands",
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in each command's epilog as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wastenet",
        description="Train, accelerate, verify and run a recycling classifier for smart bins.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"wastenet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, _Formatter)
    return parser


def describe_os_error(exc: OSError) -> str:
    """One line naming the file(s) and the system's reason, e.g. ``out/x: Not a directory``."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    reason = exc.strerror or str(exc)
    return f"{' -> '.join(names)}: {reason}" if names else reason


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return ExitCode.OK
    try:
        result = args.func(args)
    except WasteNetError as exc:
        print(f"wastenet: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except OSError as exc:  # a file the system refused: an --out under a file, a full disk
        print(f"wastenet: error: {describe_os_error(exc)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("wastenet: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    return int(result or ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
