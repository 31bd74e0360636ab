"""How a command ends when something is wrong: one line on stderr and an exit status, never a traceback.

A user error (a bad value, a missing dataset or file) exits 2, a failed write 1, Ctrl-C or SIGTERM 130.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

Runner = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A user error: printed as one clear line on stderr, exit status 2."""


def fail(message: str, status: int = 2) -> int:
    print(f"sparseopt-edu: error: {message}", file=sys.stderr)
    return status


def guarded(fn: Runner) -> Runner:
    """Turn bad values, missing datasets and missing files into one stderr line and a non-zero exit."""

    def run(args: argparse.Namespace) -> int:
        from ..train.runs import RunInUseError

        try:
            return fn(args)
        except (CliError, ValueError, FileNotFoundError, RunInUseError) as e:
            return fail(str(e))
        except OSError as e:  # a write that failed (disk full, permission): the message names the file and why
            return fail(str(e), 1)
        except KeyboardInterrupt:
            return fail("interrupted", 130)

    run.__doc__, run.__qualname__ = fn.__doc__, fn.__qualname__
    return run


def raise_interrupt(signum, frame):
    """SIGTERM handler (a scheduler or a kill): end the run like Ctrl-C, so the last checkpoint and records stay."""
    raise KeyboardInterrupt
