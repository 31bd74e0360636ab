"""Sums over the contiguous runs of a flat vector, with no atomics: the per-layer and per-neuron sums of an update.

Why: ``index_add_`` into a few bins makes the GPU's threads add into the same handful of addresses. For ResNet-18's
11 M masked weights, the nine segmented sums of one topology update took 57 ms of GPU time on an H200 (issue 17,
``benchmarks/step_overhead.py --profile``): 0.57 ms of every step once amortised over delta_t = 100, most of the
whole RigL + SparseOpt overhead. The flat layout (``flat.py``) keeps each layer, and each neuron of a Linear or
Conv, as one run of entries, so a run's sum is the difference of one prefix sum at its two ends: one pass over the
vector, no contention, exact for counts (float64 holds every integer up to 2**53).
"""
from __future__ import annotations

import torch


def run_bounds(sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(starts, stops) of consecutive runs of the given sizes, as int64 tensors on ``sizes``' device (made once)."""
    stops = torch.cumsum(sizes.to(torch.int64), 0)
    return stops - sizes.to(torch.int64), stops


def contiguous_runs(owner: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Run bounds of ``owner`` (each entry's run index, 0..n-1) if every run is contiguous and in order, else None
    (a transposed convolution spreads its neurons over its block). Reads the device once: call it at build time."""
    if owner.numel() > 1 and not bool((owner[1:] >= owner[:-1]).all()):
        return None
    return run_bounds(torch.bincount(owner, minlength=n))


def run_sums(values: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """float64 sum of ``values`` over each run: prefix[stop] - prefix[start], one cumsum for all runs."""
    starts, stops = bounds
    prefix = torch.zeros(values.numel() + 1, dtype=torch.float64, device=values.device)
    torch.cumsum(values.reshape(-1), 0, dtype=torch.float64, out=prefix[1:])
    return prefix[stops] - prefix[starts]
