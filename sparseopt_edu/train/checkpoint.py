"""Checkpoints that let a run continue exactly: everything the next step depends on, written atomically.

Contents: model (weights, BN statistics and the ``weight_mask`` buffers), masks, optimizer (the inner one's state
and SparseOpt's switch), LR schedule position, DST state (step counter, update log, ITOP union, SRigL's active
neurons), the train loader (epoch, position, generator), the loop's accumulators, and the RNG states of torch
(CPU and CUDA), Python ``random`` and numpy. On CPU a resumed run is bitwise identical to the uninterrupted one.
"""
from __future__ import annotations

import os
import random

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
    return state
