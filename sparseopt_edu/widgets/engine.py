"""How the panels get a trainer: always the library's ``sparseopt_edu.train.Trainer`` (docs/TRAINER_API.md).

The panels are subscribers: they build a trainer from a config dict (TrainConfig field names; UI-only keys of a
panel's state are dropped here), pass one callback, and read its events. The widgets hold no training logic.
"""
from __future__ import annotations

import dataclasses


def make_trainer(cfg: dict, callbacks: list):
    """A :class:`~sparseopt_edu.train.Trainer` for ``cfg`` with ``callbacks``."""
    from ..train import TrainConfig, Trainer

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return Trainer(TrainConfig(**{k: v for k, v in cfg.items() if k in names}), callbacks=callbacks)
