"""Fast mode: one environment variable shrinks every notebook and demo so CI runs them on a 2-core CPU.

``SPARSEOPT_EDU_FAST=1`` (any of 1/true/yes/on) turns it on. It also pins the device to the CPU and the
thread count, so the numbers a notebook prints are reproducible run to run (nbval compares them).
"""
from __future__ import annotations

import os

import torch

ENV_VAR = "SPARSEOPT_EDU_FAST"
FAST_THREADS = 2


def is_fast() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def pick(full, fast):
    """``fast`` in fast mode, else ``full``: notebooks write sizes as pick(full=..., fast=...)."""
    return fast if is_fast() else full


def setup(seed: int = 0) -> torch.device:
    """Seed, pin threads in fast mode, and return the device notebooks should use (CPU in fast mode)."""
    torch.manual_seed(seed)
    if is_fast():
        torch.set_num_threads(FAST_THREADS)
        return torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe() -> str:
    device = "cpu" if is_fast() or not torch.cuda.is_available() else f"cuda ({torch.cuda.get_device_name()})"
    mode = f"fast mode ({ENV_VAR}=1: small sizes, CPU, {FAST_THREADS} threads)" if is_fast() else "full mode"
    return f"{mode}; device: {device}"
