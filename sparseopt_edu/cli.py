"""The ``sparseopt-edu`` command: one argparse subcommand per function, registered with ``@command``.

How to add a subcommand (e.g. ``train``, ``compare``, ``skew``, ``reproduce``, ``demo``): write two small
functions in this module (or in a module imported at the bottom of it) and decorate the runner::

    def _train_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--epochs", type=int, default=3, help="...")

    @command("train", help="train one model headless and print the metrics", configure=_train_args)
    def train(args: argparse.Namespace) -> int:
        ...            # import heavy modules (torch, the trainer) here, not at module top
        return 0       # the process exit status

``configure`` adds the subcommand's own options; ``args`` is the parsed namespace. The first docstring line of
the runner is used as the subcommand's description when ``help`` is not given. Keep runners thin: they parse,
call the library, print. The library never imports from here (arrows point one way).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Callable

from . import __version__
from .doctor import environment_report, format_report

__all__ = ["main", "command", "build_parser", "environment_report", "COMMANDS"]

Runner = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    name: str
    run: Runner
    help: str
    configure: Configure | None = None


#: name -> Command, in registration order (that is the order ``--help`` lists them)
COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str | None = None, configure: Configure | None = None):
    """Register ``fn(args) -> int`` as the subcommand ``name``."""

    def register(fn: Runner) -> Runner:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered by {COMMANDS[name].run.__qualname__}")
        text = help or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        COMMANDS[name] = Command(name, fn, text, configure)
        return fn

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparseopt-edu",
        description="Gradient skew from BatchNorm in sparse networks, and SparseOpt: course tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.configure is not None:
            cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status (argparse errors exit with 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args._run(args) or 0)


# --------------------------------------------------------------------------------------------------- doctor
def _doctor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")


@command("doctor", configure=_doctor_args)
def doctor(args: argparse.Namespace) -> int:
    """Check versions, FigureWidget support, the JupyterLab override and the kernel's environment."""
    report = environment_report()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    return 0  # a diagnostic, not a gate: problems are reported with their fix, the exit status stays 0


if __name__ == "__main__":
    sys.exit(main())
