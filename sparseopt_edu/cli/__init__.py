"""The ``sparseopt-edu`` command: one argparse subcommand per function, registered with ``@command``.

How to add a subcommand (e.g. ``train``, ``compare``, ``skew``, ``reproduce``, ``demo``): write two small
functions in a module of this package, decorate the runner, and import the module at the bottom of this file
(the import order is the order ``--help`` lists the commands)::

    def _train_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--epochs", type=int, default=3, help="...")

    @command("train", help="train one model headless and print the metrics", configure=_train_args)
    def train(args: argparse.Namespace) -> int:
        ...            # import heavy modules (torch, the trainer) here, not at module top
        return 0       # the process exit status

``configure`` adds the subcommand's own options; ``args`` is the parsed namespace. The first docstring line of
the runner is used as the subcommand's description when ``help`` is not given. Keep runners thin: they parse,
call the library, print. The library never imports from here (arrows point one way).

The modules: ``args`` (argument types), ``errors`` (one-line errors, exit statuses), ``config`` (TrainConfig
fields as flags), one module per command family (``doctor``, ``train``, ``grid`` with ``compare``, ``skew``,
``reproduce``, ``demo``).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from .. import __version__

__all__ = ["COMMANDS", "CliError", "build_parser", "command", "environment_report", "main"]

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


class _Parser(argparse.ArgumentParser):
    """argparse with whole option names only (``--method`` is never read as ``--methods``) and one-line errors
    (the usage of ``train`` is 30 lines: it would bury the message)."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    with_usage = False  # the top-level parser: its usage is one short line listing the commands

    def error(self, message):
        if self.with_usage:
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sparseopt-edu",
        description="Gradient skew from BatchNorm in sparse networks, and SparseOpt: course tools.",
    )
    parser.with_usage = True
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)  # subparsers are _Parsers too
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.configure is not None:
            cmd.configure(p)
        p.set_defaults(_run=cmd.run, _parser=p)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A library warning on the command line: one line, no source location."""
    print(f"sparseopt-edu: warning: {message}", file=file or sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status (argparse errors exit with 2)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the subcommand's parser: "sparseopt-edu train: error: ... (see sparseopt-edu train --help)"
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    with warnings.catch_warnings():  # (restores the caller's warning display: main() also runs in-process)
        warnings.showwarning = _show_warning
        return int(args._run(args) or 0)


# The command families register themselves on import, in this order (the order of ``--help``).
from . import doctor, train, grid, skew, reproduce, demo  # noqa: E402, F401, I001
from ..doctor import environment_report  # noqa: E402 (tests import it from here)
from .config import config_from_args as _config_from_args  # noqa: E402, F401 (tests/test_schedule_units.py)
from .errors import CliError  # noqa: E402
