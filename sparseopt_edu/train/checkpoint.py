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
