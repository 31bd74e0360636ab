"""How the panels get a trainer: always the library's ``sparseopt_edu.train.Trainer`` (docs/TRAINER_API.md).

The panels are subscribers: they build a trainer from a config dict (TrainConfig field names; unknown keys are
ignored so panel state may carry UI-only fields), pass one callback, and read its events. The widgets hold no
training logic of their own.
"""
from __future__ import annotations

import dataclasses


def engine_name() -> str:
    return "trainer"


def make_trainer(cfg: dict, callbacks: list, prefer: str = "auto"):
    """A :class:`~sparseopt_edu.train.Trainer` for ``cfg`` with ``callbacks``."""
    if prefer not in ("auto", "trainer"):
        raise ValueError(f"engine must be 'auto' or 'trainer', got {prefer!r}")
    from ..train import TrainConfig, Trainer

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return Trainer(TrainConfig(**{k: v for k, v in cfg.items() if k in names}), callbacks=callbacks)
