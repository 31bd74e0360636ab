"""Checkpoints that let a run continue exactly: everything the next step depends on, written atomically.

Contents: model (weights, BN statistics and the ``weight_mask`` buffers), masks, optimizer (the inner one's state
and SparseOpt's switch), LR schedule position, DST state (step counter, update log, ITOP union, SRigL's active
neurons), the train loader (epoch, position, generator), the loop's accumulators, and the RNG states of torch
(CPU and CUDA), Python ``random`` and numpy. On CPU a resumed run is bitwise identical to the uninterrupted one.

Each checkpoint carries a sha256 over its contents (every tensor's dtype, shape and bytes, every other value's
repr), checked on load: a damaged file gives a clear error and is left untouched.
"""
from __future__ import annotations

import hashlib
import os
import random
import warnings

import numpy as np
import torch

from .runs import atomic_write


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _feed(h, obj) -> None:
    """Hash ``obj`` as it round-trips through torch.save: tensors by dtype, shape and bytes, containers in order."""
    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)};".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()))
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype}{obj.shape};".encode())
        h.update(memoryview(np.ascontiguousarray(obj).reshape(-1).view(np.uint8)))
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"S{type(obj).__name__}:{obj!r};".encode())


def checksum(state: dict) -> str:
    """sha256 of a checkpoint's contents (without its ``checksum`` entry)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "checksum"})
    return h.hexdigest()


def save(state: dict, path) -> None:
    """Write a checkpoint atomically, with its checksum."""
    atomic_save({**state, "checksum": {"sha256": checksum(state)}}, path)


def load(path, map_location="cpu") -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}: train with run_dir=... first (resume needs checkpoint.pt)")
    # weights_only=False: the checkpoint holds Python RNG state and small dicts we wrote ourselves
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, wrong file, unpickling errors: all mean "not a usable checkpoint"
        raise ValueError(
            f"checkpoint {path} is damaged or is not a sparseopt-edu checkpoint ({type(e).__name__}: {e}). "
            "It was left untouched; resume from a copy, or start a new run under another --name."
        ) from e
    if not isinstance(state, dict) or "model" not in state or "version" not in state:
        raise ValueError(f"{path} is not a sparseopt-edu checkpoint (no 'model'/'version' entries)")
    stored = state.pop("checksum", None)
    if stored is None:
        warnings.warn(f"checkpoint {path} has no checksum (written by an older sparseopt-edu): it is loaded "
                      "unverified", stacklevel=2)
    else:
        try:
            actual = checksum(state) if isinstance(stored, dict) else None
        except Exception:  # noqa: BLE001 - contents so damaged they cannot even be hashed
            actual = None
        if not isinstance(stored, dict) or stored.get("sha256") != actual:
            raise ValueError(
                f"checkpoint {path} is damaged: its contents do not match the sha256 stored with it. It was left "
                "untouched; resume from a copy, or start a new run under another --name.")
    return state


# ----- a trainer's state: what the next step depends on ----------------------------------------------------------
#: config fields that say where and how a run executes, not what it computes: a resume may change them
HOW_FIELDS = ("run_dir", "resume", "progress", "device", "data_root", "download", "amp", "channels_last",
              "compile", "cuda_graphs", "checkpoint_every_epochs")
#: the run's length: a resume may change it while the new end is not behind the checkpoint (recorded in
#: ``history.meta["length_changes"]``)
LENGTH_FIELDS = ("epochs", "steps")
#: what a trainer checkpoint holds
CHECKPOINT_KEYS = ("version", "config", "model", "masks", "optimizer", "lr_schedule", "dst", "train_loader", "loop",
                   "history", "rng")


def config_differences(saved: dict, config, skip=HOW_FIELDS + LENGTH_FIELDS) -> list[str]:
    """The fields that define a run (all but ``skip``) whose values differ between ``saved`` (a config dict, as
    in config.json or a checkpoint) and ``config`` (a TrainConfig), as "name (saved vs new)" strings. JSON
    spelling decides equality, so 1 (steps) and 1.0 (a fraction) differ."""
    import json

    defaults = {f: v.default for f, v in type(config).__dataclass_fields__.items()}
    out = []
    for key, value in config.to_dict().items():
        if key in skip:
            continue
        old = saved.get(key, defaults.get(key))
        if json.dumps(old, sort_keys=True, default=str) != json.dumps(value, sort_keys=True, default=str):
            out.append(f"{key} ({old!r} in the run, {value!r} here)")
    return out


def trainer_state(trainer) -> dict:
    """Everything the trainer's next step depends on (the module docstring lists it)."""
    t = trainer
    return {
        "version": 1,
        "config": t.config.to_dict(),
        "model": t.model.state_dict(),
        "masks": t.masks.state_dict() if t.masks is not None else None,
        "optimizer": t.optimizer.state_dict(),
        "lr_schedule": t.lr_schedule.state_dict(),
        "dst": t.dst.state_dict() if t.dst is not None else None,
        "train_loader": t.train_loader.state_dict(),
        "loop": {"step": t.step, "epoch": t.epoch, **t.sums.state_dict(), **t.counts.state_dict()},
        "history": t.history.to_dict(),
        "rng": rng_state(),
    }


def restore(trainer, state: dict) -> None:
    """Load ``state`` (from :func:`trainer_state`) into a trainer built from the same config."""
    from .events import History

    t = trainer
    if t.masks is not None:
        t.masks.load_state_dict(state["masks"])
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    for group in t.optimizer.param_groups:  # CUDA graphs read the LR from a device tensor, eager a float
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, device=t.device) if t.features["cuda_graphs"] else lr
    t.lr_schedule.load_state_dict(state["lr_schedule"])
    if t.dst is not None:
        t.dst.load_state_dict(state["dst"])
    t.train_loader.load_state_dict(state["train_loader"])
    loop = state["loop"]
    t.step, t.epoch = loop["step"], loop["epoch"]
    t.sums.load_state_dict(loop)
    t.counts.load_state_dict(loop)
    t.history = History.from_dict(state["history"])
    t.history.config = t.config.to_dict()
    set_rng_state(state["rng"])


def load_into(trainer, path) -> None:
    """Continue ``trainer`` from the checkpoint at ``path``: refused, naming the fields, if another run wrote it;
    refused if it lies beyond this config's end; an extended run records the change of length."""
    state = load(path)
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {', '.join(map(repr, missing))}: it was not written by "
                         "Trainer.save_checkpoint (or was edited). It was left untouched; start a new run "
                         "under another --name.")
    cfg = trainer.config
    saved = state["config"] if isinstance(state["config"], dict) else {}
    diffs = config_differences(saved, cfg)
    if diffs:
        raise ValueError(f"checkpoint {path} belongs to another run: {'; '.join(diffs)}. Resume it with its "
                         "own settings (sparseopt-edu train --name NAME --resume, no other flags), or start a "
                         "new run under another --name.")
    loop = state["loop"]
    step = loop.get("step") if isinstance(loop, dict) else None
    if isinstance(step, int) and step > trainer.total_steps:
        raise ValueError(f"checkpoint {path} is at step {step} (epoch {loop.get('epoch')}), beyond this "
                         f"config's end at step {trainer.total_steps} (epochs={cfg.epochs}, "
                         f"steps={cfg.steps}): a run cannot be shortened. Resume without --epochs/--steps, "
                         "or with a larger value to extend it.")
    try:
        restore(trainer, state)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(
            f"checkpoint {path} does not fit this run ({type(e).__name__}: {first}); "
            "was it written for another configuration? Resume with the run's own config.json "
            "(sparseopt-edu train --name NAME --resume)."
        ) from e
    length = {k: saved.get(k) for k in LENGTH_FIELDS}
    now = {k: getattr(cfg, k) for k in LENGTH_FIELDS}
    if length != now:  # an extended (or re-planned) run says so in its record
        trainer.history.meta.setdefault("length_changes", []).append(
            {"at_step": trainer.step, "at_epoch": trainer.epoch, "from": length, "to": now})
    trainer.resumed_from = os.fspath(path)


def resume_config(run_dir, overrides: dict):
    """The config that continues the run in ``run_dir``: its config.json (or, from a run killed by an older
    version, its checkpoint's), changed only by ``overrides`` of how it runs and of its length."""
    from .config import TrainConfig
    from .runs import CHECKPOINT, CONFIG

    run_dir = os.fspath(run_dir)
    path, ckpt_path = os.path.join(run_dir, CONFIG), os.path.join(run_dir, CHECKPOINT)
    if os.path.isfile(path):
        saved = TrainConfig.from_json(path)
    elif os.path.isfile(ckpt_path):
        saved = TrainConfig.from_dict(load(ckpt_path)["config"])
    else:
        raise FileNotFoundError(f"nothing to resume in {run_dir}: no {CONFIG} and no {CHECKPOINT} (start the run "
                                "without --resume)")
    cfg = saved.replace(**{**overrides, "run_dir": run_dir, "resume": False})
    diffs = config_differences(saved.to_dict(), cfg)
    if diffs:
        raise ValueError(f"resume continues {run_dir} as its {CONFIG} says; these settings differ from it: "
                         f"{'; '.join(diffs)}. Drop them (and --config) to resume, or start a new run under "
                         "another --name.")
    return cfg, ckpt_path
