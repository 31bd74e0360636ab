"""Argument types shared by the subcommands: each reads one flag's text or says what it expected.

An ``argparse.ArgumentTypeError`` becomes argparse's one-line error: ``argument --lr: expected a number, ...``.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from .errors import CliError


def floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def auto_bool(text: str):
    v = text.strip().lower()
    if v in ("auto",):
        return "auto"
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def or_none(parse: Callable[[str], object], expected: str) -> Callable[[str], object]:
    """``parse``, or None for ``none`` or empty text (an optional field: ``--steps none`` is "use --epochs")."""

    def read(text: str):
        if text.strip().lower() in ("none", ""):
            return None
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected} or 'none', got {text!r}") from None

    return read


int_or_none = or_none(int, "an integer")
float_or_none = or_none(float, "a positive number")


def names(text: str) -> tuple[str, ...]:
    """``fc1,head`` -> ("fc1", "head")."""
    return tuple(x for x in text.split(",") if x)


def json_dict(text: str) -> dict:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({e})") from None
    if not isinstance(d, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return d


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is fastest for small models on a busy machine)")


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (imports torch: call it inside a runner, not while building the parser)."""
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise CliError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
