"""Layer-wise sparsity distributions: how many weights each masked layer keeps.

A distribution is an object with one method, ``layer_counts(shapes, sparsity) -> {layer: live count}``: ``sparsify``
asks it how many weights each layer keeps, then draws where they sit (jaxpruner's composition: the distribution
is a part one can swap). RigL's three (Evci et al. 2020; docs/method.md section 4):

- :class:`Uniform`: every masked layer at the same sparsity.
- :class:`ER`: density proportional to (n_in + n_out) / (n_in * n_out) (Erdos-Renyi; kernel size ignored).
- :class:`ERK`: density proportional to sum(dims) / prod(dims) over (n_out, n_in, kh, kw) (Erdos-Renyi-Kernel).

For ``ER``/``ERK`` the scale epsilon solves sum_l d_l N_l = (1 - S) sum_l N_l; a layer that would exceed density 1
is made dense and epsilon re-solved until none does. :class:`Distribution` then turns the float densities into
integer live counts whose total is exactly round((1 - S) * N), every layer keeping at least one weight.

``DISTRIBUTIONS`` names them ("uniform", "er", "erk": the CLI's choices). Your own: subclass ``ER`` and give
``raw_density``, subclass ``Distribution`` and give ``layer_densities``, or pass any object with ``layer_counts``.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

Shapes = Mapping[str, Sequence[int]]


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


class Distribution:
    """A rule for the float density of each layer (:meth:`layer_densities`, what a subclass gives), turned into
    integer live counts (:meth:`layer_counts`) whose total is exactly round((1 - sparsity) * N)."""

    def layer_densities(self, shapes: Shapes, sparsity: float) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must define layer_densities(shapes, sparsity)")

    def layer_counts(self, shapes: Shapes, sparsity: float) -> dict[str, int]:
        """Integer live count per layer; the total is exactly round((1 - S) * N), each layer in [1, N_l].

        Rounding is by largest remainder, so no layer is more than one weight away from its float density
        (except where the at-least-one rule applies).
        """
        sparsity = check_sparsity(sparsity)
        densities = self.layer_densities(shapes, sparsity)
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Uniform(Distribution):
    """Every masked layer at the global sparsity."""

    def layer_densities(self, shapes: Shapes, sparsity: float) -> dict[str, float]:
        sparsity = check_sparsity(sparsity)
        return {name: 1.0 - sparsity for name in shapes}


class ER(Distribution):
    """Erdos-Renyi: density proportional to (n_in + n_out) / (n_in * n_out), the kernel size ignored, so small
    layers keep more of their weights; scaled to the global budget, a layer that would pass 1 is made dense."""

    def raw_density(self, shape: Sequence[int]) -> float:
        """The density before scaling (only ratios between layers matter)."""
        n_out, n_in = shape[0], shape[1]
        return (n_in + n_out) / (n_in * n_out)

    def layer_densities(self, shapes: Shapes, sparsity: float) -> dict[str, float]:
        sparsity = check_sparsity(sparsity)
        numel = {name: math.prod(s) for name, s in shapes.items()}
        raw = {name: self.raw_density(s) for name, s in shapes.items()}
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


class ERK(ER):
    """Erdos-Renyi-Kernel: ER with the kernel dims counted, density proportional to sum(dims) / prod(dims)."""

    def raw_density(self, shape: Sequence[int]) -> float:
        return sum(shape) / math.prod(shape)


# The names a config or the CLI can give (the one list of them: train/config.py's choices come from here).
DISTRIBUTIONS: dict[str, type[Distribution]] = {"uniform": Uniform, "er": ER, "erk": ERK}

_OR_AN_OBJECT = "or pass an object with a layer_counts(shapes, sparsity) method (e.g. ERK())"


def as_distribution(distribution: str | Distribution) -> Distribution:
    """The distribution object for a name in DISTRIBUTIONS; an object with ``layer_counts`` as it is."""
    if isinstance(distribution, str):
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {distribution!r}: choose one of {', '.join(DISTRIBUTIONS)}, "
                             + _OR_AN_OBJECT)
        return DISTRIBUTIONS[distribution]()
    if isinstance(distribution, type):
        raise TypeError(f"distribution={distribution.__name__} is a class: pass an instance, "
                        f"{distribution.__name__}()")
    if not callable(getattr(distribution, "layer_counts", None)):
        raise TypeError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, {_OR_AN_OBJECT}; "
                        f"got {distribution!r}")
    return distribution


def check_counts(counts, shapes: Shapes, distribution) -> dict[str, int]:
    """What a distribution object returned, checked: an int in [1, N_l] for every layer of ``shapes``."""
    if not isinstance(counts, Mapping) or set(counts) != set(shapes):
        got = sorted(counts) if isinstance(counts, Mapping) else type(counts).__name__
        raise ValueError(f"{distribution!r}.layer_counts must return {{layer: live count}} for exactly the masked "
                         f"layers {sorted(shapes)}, got {got}")
    for name, count in counts.items():
        number, numel = as_number(count), math.prod(shapes[name])
        if not isinstance(number, int) or not 1 <= number <= numel:
            raise ValueError(f"{distribution!r} gives layer {name!r} {count!r} live weights: a count must be an "
                             f"int in [1, {numel}] (every masked layer keeps at least one weight)")
    return {name: int(count) for name, count in counts.items()}


def layer_densities(shapes: Shapes, sparsity: float, distribution: str | Distribution = "erk") -> dict:
    """Float density per layer (before rounding to integer counts) of a distribution, by name or object."""
    sparsity = check_sparsity(sparsity)
    distribution = as_distribution(distribution)
    if not callable(getattr(distribution, "layer_densities", None)):
        raise TypeError(f"{distribution!r} gives live counts only (it has no layer_densities): use layer_counts")
    return distribution.layer_densities(shapes, sparsity)


def layer_counts(shapes: Shapes, sparsity: float, distribution: str | Distribution = "erk") -> dict:
    """Integer live count per layer of a distribution, by name or object (see :meth:`Distribution.layer_counts`)."""
    sparsity = check_sparsity(sparsity)
    distribution = as_distribution(distribution)
    return check_counts(distribution.layer_counts(shapes, sparsity), shapes, distribution)
