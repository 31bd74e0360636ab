"""TrainConfig as command-line flags: one flag per field (``--weight-decay 5e-4``, ``--no-sparseopt``), and the
namespace back to a TrainConfig (``--config FILE.json`` first, the flags over it)."""
from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, Field, fields
from typing import get_args, get_type_hints

from . import args as types
from .errors import CliError

#: how a field's type reads from the command line: (parser of the flag's text, metavar)
_READERS = {int: (types.integer, "N"), float: (types.number, "X"), str: (str, "NAME"),
            tuple: (types.names, "NAME,..."), dict: (types.json_dict, "JSON")}
#: ... and of an optional field (``int | None``): "none" or empty text is None
_OPTIONAL = {int: types.int_or_none, float: types.float_or_none}


def field_flag(f: Field, hint) -> tuple[str, dict]:
    """The flag of one config field, from its type (``hint``) and metadata alone: its option string and the
    keyword arguments of ``add_argument``. The metadata (``train.config.option``) holds the help sentence, the
    allowed values (``choices``: listed as the metavar, checked by TrainConfig, so a bad value gets its one
    message), an optional ``metavar``; a bool is ``--x/--no-x``, a choice among auto/on/off reads as such."""
    meta = f.metadata
    if not meta.get("help"):
        raise TypeError(f"config field {f.name!r} has no help text: give it option(..., help=...) in train/config.py")
    default = f.default_factory() if f.default is MISSING else f.default
    text = meta["help"]
    if "(default:" not in text:  # default=SUPPRESS (an unset flag keeps the config's value): say the default here
        shown = {True: "on", False: "off"}.get(default, default) if isinstance(default, bool) else default
        text += f" (default: {'none' if shown in ((), {}) else shown})"
    kw = {"dest": f"cfg_{f.name}", "default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
    flag = "--" + f.name.replace("_", "-")
    choices = meta.get("choices")
    inner = [a for a in get_args(hint) if a is not type(None)]
    optional = len(inner) == 1 and len(get_args(hint)) == 2  # X | None
    base = inner[0] if optional else hint
    if base is bool:
        return flag, {**kw, "action": argparse.BooleanOptionalAction}
    if choices is not None and any(isinstance(c, bool) for c in choices):  # "auto", True, False
        return flag, {**kw, "type": types.auto_bool, "metavar": meta.get("metavar", "auto|on|off")}
    if base not in _READERS:
        raise TypeError(f"config field {f.name!r}: no command-line reading for type {hint!r}; use one of "
                        f"{', '.join(t.__name__ for t in _READERS)} (or X | None), bool, or choices with auto/on/off")
    parse, metavar = _READERS[base]
    if optional:
        parse = _OPTIONAL.get(base, parse)
    if choices is not None:
        metavar = "{" + ",".join(map(str, choices)) + "}"
    return flag, {**kw, "type": parse, "metavar": meta.get("metavar", metavar)}


def config_flags(parser: argparse.ArgumentParser, skip=()) -> None:
    """One flag per TrainConfig field (``--weight-decay 5e-4``, ``--no-sparseopt``); unset flags keep defaults.
    A field with ``flag=False`` in its metadata (run_dir, resume) is set by the CLI itself."""
    from ..train.config import TrainConfig  # light: no torch work at import

    group = parser.add_argument_group("training config (TrainConfig fields; defaults as in docs/TRAINER_API.md)")
    group.add_argument("--config", metavar="FILE.json", help="start from this JSON config; flags override it")
    hints = get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.metadata.get("flag", True) and f.name not in skip:
            flag, kw = field_flag(f, hints[f.name])
            group.add_argument(flag, **kw)


def config_from_args(args: argparse.Namespace, **fixed):
    from ..train import TrainConfig

    base = {}
    if getattr(args, "config", None):
        if not os.path.isfile(args.config):
            raise CliError(f"--config {args.config}: no such file")
        base = TrainConfig.from_json(args.config).to_dict()
    for key, value in vars(args).items():
        if key.startswith("cfg_"):
            base[key[4:]] = value
    base.update(fixed)
    return TrainConfig.from_dict(base)


def check_dataset(cfg) -> None:
    """Fail early (before any training) when a torchvision dataset is missing."""
    if cfg.dataset in ("cifar10", "cifar100", "mnist", "fashion_mnist"):
        from ..data import load_dataset

        try:
            load_dataset(cfg.dataset, root=cfg.data_root, download=cfg.download, **cfg.data_kwargs)
        except (RuntimeError, OSError) as e:  # a failed download (offline) or an unreadable folder: its message
            if isinstance(e, FileNotFoundError):
                raise
            raise CliError(str(e).replace("\n", " ")) from None
