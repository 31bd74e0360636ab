"""TrainConfig as command-line flags: one flag per field (``--weight-decay 5e-4``, ``--no-sparseopt``), and the
namespace back to a TrainConfig (``--config FILE.json`` first, the flags over it)."""
from __future__ import annotations

import argparse
import os

from . import args as types
from .errors import CliError

#: config fields the CLI sets itself (not as flags)
_NOT_FLAGS = ("run_dir", "resume")


def config_flags(parser: argparse.ArgumentParser, skip=()) -> None:
    """One flag per TrainConfig field (``--weight-decay 5e-4``, ``--no-sparseopt``); unset flags keep defaults."""
    from dataclasses import MISSING, fields

    from ..train.config import CHOICES, HELP, TrainConfig  # light: no torch work at import

    group = parser.add_argument_group("training config (TrainConfig fields; defaults as in docs/TRAINER_API.md)")
    group.add_argument("--config", metavar="FILE.json", help="start from this JSON config; flags override it")
    for f in fields(TrainConfig):
        if f.name in _NOT_FLAGS or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default is MISSING else f.default
        # default=SUPPRESS (an unset flag keeps the config's value), so --help states the default itself
        text = HELP[f.name]
        if "(default:" not in text:
            shown = {True: "on", False: "off"}.get(default, default) if isinstance(default, bool) else default
            text += f" (default: {'none' if shown in ((), {}) else shown})"
        kw = {"dest": f"cfg_{f.name}", "default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if f.name in CHOICES and default != "auto":  # values are checked by TrainConfig (one error message)
            kw["metavar"] = "{" + ",".join(CHOICES[f.name]) + "}"
        if default == "auto" and f.name in ("amp", "channels_last", "cuda_graphs", "progress", "sync_bn"):
            kw.update(type=types.auto_bool, metavar="auto|on|off")
        elif f.name == "dense_layers":
            kw.update(type=types.names, metavar="NAME,...")
        elif f.name == "data_kwargs":
            kw.update(type=types.json_dict, metavar="JSON")
        elif f.name in ("steps", "n_train", "n_test", "t_end_steps"):
            kw.update(type=types.int_or_none, metavar="N")
        elif f.name == "t_end":  # a fraction of training, always ("1" is 1.0); steps: --t-end-steps
            kw.update(type=types.number, metavar="FRACTION")
        elif f.name == "max_grad_norm":
            kw.update(type=types.float_or_none, metavar="X")
        elif isinstance(default, int):
            kw.update(type=types.integer, metavar="N")
        elif isinstance(default, float):
            kw.update(type=types.number, metavar="X")
        else:
            kw.update(type=str)
            kw.setdefault("metavar", {"device": "auto|cpu|cuda[:N]", "data_root": "DIR"}.get(f.name, "NAME"))
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
