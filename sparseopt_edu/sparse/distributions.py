"""Layer-wise sparsity distributions: how many weights each masked layer keeps.

RigL's definitions (Evci et al. 2020; docs/method.md section 4):
- ``uniform``: every masked layer at the same sparsity.
- ``er``: density proportional to (n_in + n_out) / (n_in * n_out) (Erdos-Renyi; kernel size ignored).
- ``erk``: density proportional to sum(dims) / prod(dims) over (n_out, n_in, kh, kw) (Erdos-Renyi-Kernel).

For ``er``/``erk`` the scale epsilon solves sum_l d_l N_l = (1 - S) sum_l N_l; a layer that would exceed density 1
is made dense and epsilon re-solved until none does. The float densities are then turned into integer live
counts whose total is exactly round((1 - S) * N), every layer keeping at least one weight.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

DISTRIBUTIONS = ("uniform", "er", "erk")


def as_number(value):
    """``value`` as a Python int or float if it is one real number: an int, a float, a numpy scalar or a 0-d
    tensor (so ``sparsity=torch.tensor(0.9)`` or ``np.float32(0.9)`` work); None otherwise (a string, a bool, an
    array, a complex number). Callers turn None into an error that names the value."""
    if isinstance(value, (bool, str, bytes)):
        return None
    if not isinstance(value, numbers.Number) and hasattr(value, "ndim") and hasattr(value, "item"):
        if value.ndim != 0:  # an array or a tensor with several entries is not one number
            return None
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check_sparsity(sparsity: float) -> float:
    number = as_number(sparsity)
    if number is None or not math.isfinite(number):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    sparsity = number
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(
            f"sparsity must be in [0, 1), got {sparsity}: it is the fraction of zeros, "
            "so 0.9 keeps 10% of the weights (use a value below 1)"
        )
    return float(sparsity)


def check_distribution(distribution: str) -> str:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}: choose one of {', '.join(DISTRIBUTIONS)}")
    return distribution


def _raw_density(shape: Sequence[int], distribution: str) -> float:
    if distribution == "uniform":
        return 1.0
    n_out, n_in = shape[0], shape[1]
    if distribution == "er":
        return (n_in + n_out) / (n_in * n_out)
    return sum(shape) / math.prod(shape)  # erk: kernel dims count too


def layer_densities(shapes: Mapping[str, Sequence[int]], sparsity: float, distribution: str = "erk") -> dict:
    """Float density per layer (before rounding to integer counts)."""
    sparsity = check_sparsity(sparsity)
    check_distribution(distribution)
    numel = {name: math.prod(s) for name, s in shapes.items()}
    if distribution == "uniform":
        return {name: 1.0 - sparsity for name in shapes}
    raw = {name: _raw_density(s, distribution) for name, s in shapes.items()}
    dense: set[str] = set()
    target = (1.0 - sparsity) * sum(numel.values())
    while True:
        rest = [n for n in shapes if n not in dense]
        if not rest:  # every layer dense: only possible at sparsity 0
            return {n: 1.0 for n in shapes}
        eps = (target - sum(numel[n] for n in dense)) / sum(raw[n] * numel[n] for n in rest)
        too_dense = {n for n in rest if eps * raw[n] > 1.0}
        if not too_dense:
            return {n: (1.0 if n in dense else eps * raw[n]) for n in shapes}
        dense |= too_dense


def layer_counts(shapes: Mapping[str, Sequence[int]], sparsity: float, distribution: str = "erk") -> dict:
    """Integer live count per layer; the total is exactly round((1 - S) * N), each layer in [1, N_l].

    Rounding is by largest remainder, so no layer is more than one weight away from its float density
    (except where the at-least-one rule applies).
    """
    densities = layer_densities(shapes, sparsity, distribution)
    numel = {name: math.prod(s) for name, s in shapes.items()}
    total = round((1.0 - sparsity) * sum(numel.values()))
    if total < len(shapes):
        raise ValueError(
            f"sparsity {sparsity} leaves {total} weights for {len(shapes)} masked layers, but every masked "
            "layer must keep at least one weight: lower the sparsity or keep some layers dense (dense=...)"
        )
    exact = {n: densities[n] * numel[n] for n in shapes}
    counts = {n: min(numel[n], max(1, math.floor(exact[n]))) for n in shapes}
    remainder = {n: exact[n] - math.floor(exact[n]) for n in shapes}
    diff = total - sum(counts.values())
    if diff > 0:  # give the missing weights to the largest remainders first, round-robin if needed
        while diff > 0:
            order = sorted((n for n in shapes if counts[n] < numel[n]), key=lambda n: -remainder[n])
            for n in order[:diff]:
                counts[n] += 1
            diff = total - sum(counts.values())
    while diff < 0:  # the at-least-one rule overshot: take back from the smallest remainders
        order = sorted((n for n in shapes if counts[n] > 1), key=lambda n: remainder[n])
        for n in order[: -diff]:
            counts[n] -= 1
        diff = total - sum(counts.values())
    return counts
