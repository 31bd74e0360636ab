"""Building the masks: ``sparsify`` draws each layer's initial mask and zeroes the weights outside it.

How many weights each layer keeps is the distribution's decision (distributions.py); where they sit inside a
layer is the fan-in mode's (:func:`random_mask`); how the surviving weights are scaled is ``init``'s. The result
is a :class:`SparseMasks`, which keeps the masks from then on.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from .distributions import Distribution, as_distribution, check_sparsity, layer_counts
from .layers import (
    MASKABLE,
    from_neuron_rows,
    is_transposed,
    maskable_layers,
    neuron_count,
    neuron_rows,
    per_neuron,
    unmaskable_weights,
    weight_numel,
)
from .masks import SparseMasks


def random_mask(shape, count: int, generator: torch.Generator, fan_in: str = "random") -> torch.Tensor:
    """A boolean mask with exactly ``count`` live entries.

    ``fan_in="random"`` scatters them uniformly (per-neuron fan-in ~ Binomial); ``"constant"`` gives every
    neuron count // n_out and the first count % n_out neurons one more (SRigL's rule).
    """
    n_out = shape[0]
    fan = math.prod(shape[1:])
    if fan_in == "random":
        idx = torch.randperm(n_out * fan, generator=generator)[:count]
        mask = torch.zeros(n_out * fan, dtype=torch.bool)
        mask[idx] = True
        return mask.view(shape)
    if fan_in != "constant":
        raise ValueError(f"fan_in must be 'random' or 'constant', got {fan_in!r}")
    per = torch.full((n_out,), count // n_out, dtype=torch.long)
    per[: count % n_out] += 1
    order = torch.rand(n_out, fan, generator=generator).argsort(dim=1)
    mask = torch.zeros(n_out, fan, dtype=torch.bool)
    mask.scatter_(1, order, torch.arange(fan).expand(n_out, fan) < per[:, None])
    return mask.view(shape)


def sparsify(
    model: nn.Module,
    sparsity: float,
    distribution: str | Distribution = "erk",
    *,
    dense: Iterable[str] = (),
    seed: int = 0,
    fan_in: str = "random",
    init: str = "dense",
    state_policy: str = "zero",
) -> SparseMasks:
    """Mask every Linear / Conv layer of ``model`` (except ``dense``) at a global ``sparsity``.

    ``weight`` stays the module's leaf Parameter; a boolean ``weight_mask`` buffer is registered beside it and
    the masked weights are zeroed. ``distribution`` decides how many weights each layer keeps: a name in
    ``DISTRIBUTIONS`` ("erk", "er", "uniform"), a :class:`Distribution` (``ERK()``, ...) or any object with a
    ``layer_counts(shapes, sparsity)`` method, whose counts are used exactly. The built-in ones keep a total of
    exactly round((1 - sparsity) * N) over the masked layers. ``init="dense"`` keeps PyTorch's dense init, then
    masks (the regime the paper analyses); ``init="sparse"`` rescales each neuron by sqrt(fan_in / live_i), so its
    pre-activation variance matches a dense neuron's and the skew vanishes at step 0.
    """
    sparsity = check_sparsity(sparsity)
    distribution = as_distribution(distribution)
    if init not in ("dense", "sparse"):
        raise ValueError(f"init must be 'dense' or 'sparse', got {init!r}")
    layers = maskable_layers(model, dense)
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer left to sparsify "
            "(check dense=, or build the model from Linear/Conv2d layers)"
        )
    already = [n for n, m in layers.items() if "weight_mask" in m._buffers]
    if already:
        raise ValueError(f"layers {already} are already sparsified: call masks.remove() before sparsify() again")
    counts = layer_counts({n: tuple(m.weight.shape) for n, m in layers.items()}, sparsity, distribution)
    left = unmaskable_weights(model, layers, dense)
    if left:
        n_left = sum(p.numel() for n, p in model.named_parameters() if n in left)
        masked = sum(m.weight.numel() for m in layers.values())
        whole = (masked - sum(counts.values())) / weight_numel(model)
        owners = sorted({n.rpartition(".")[0] or n for n in left})
        warnings.warn(
            f"sparsify masks only {', '.join(m.__name__ for m in MASKABLE)} layers: {', '.join(sorted(left))} "
            f"({', '.join(sorted(set(left.values())))}; {n_left:,} weights) stay dense, so the model is "
            f"{whole:.3f} sparse (masks.model_sparsity()), not the {sparsity} of the masked layers "
            f"(masks.sparsity()). To keep them dense on purpose and silence this, pass dense={owners!r}",
            UserWarning, stacklevel=2)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in layers.items():
            w = module.weight
            if is_transposed(module):  # drawn one row per output neuron, then laid out as the weight
                rows = random_mask((neuron_count(module), w.numel() // neuron_count(module)), counts[name], gen, fan_in)
                mask = from_neuron_rows(module, rows).to(w.device)
            else:
                mask = random_mask(tuple(w.shape), counts[name], gen, fan_in).to(w.device)
            module.register_buffer("weight_mask", mask)
            w.mul_(mask)
            if init == "sparse":
                live = neuron_rows(module, mask).sum(1).clamp_min(1).to(w.dtype)
                w.mul_(per_neuron(module, (w.numel() / neuron_count(module) / live).sqrt()))
    return SparseMasks(model, layers, state_policy=state_policy)
