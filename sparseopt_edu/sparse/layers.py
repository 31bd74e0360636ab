"""Which layers of a model are masked, and what a neuron is in each of them.

A *neuron* is an output row of a Linear weight or an output channel of a convolution (docs/method.md section 2).
Masked: Linear, Conv1d, Conv2d and ConvTranspose2d. A transposed convolution stores its weight as
(C_in, C_out / groups, kh, kw), so its output channels are dim 1, not dim 0: every per-neuron quantity (fan-in,
live count, SparseOpt's scale, SRigL's rule) goes through :func:`neuron_rows`, which lays any masked weight out as
one row per output neuron. Layers that do not fit the neuron definition (Embedding, LSTM/GRU, MultiheadAttention's
``in_proj_weight``, Conv3d, ...) are not masked: :func:`unmaskable_weights` names them so ``sparsify`` can warn.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

MASKABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


def is_transposed(module: nn.Module) -> bool:
    """A transposed convolution: its output neurons are its weight's dim 1."""
    return isinstance(module, nn.modules.conv._ConvTransposeNd)


def neuron_count(module: nn.Module) -> int:
    """Output neurons of a masked layer: rows of a Linear, output channels of a convolution."""
    w = module.weight
    return w.shape[1] * module.groups if is_transposed(module) else w.shape[0]


def neuron_rows(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """``t`` (shaped like ``module.weight``) as (neurons, fan_in): row i holds the incoming weights of neuron i.

    For Linear/Conv this is ``t.flatten(1)``. A ConvTranspose2d weight is (C_in, C_out/g, kh, kw): output channel
    o = group * C_out/g + j reads input channels of its group only, so its row is ``t[group's inputs, j]``.
    """
    if not is_transposed(module):
        return t.flatten(1)
    g = module.groups
    c_in, c_out_g, *k = t.shape
    return t.reshape(g, c_in // g, c_out_g, *k).transpose(1, 2).reshape(g * c_out_g, -1)


def from_neuron_rows(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`neuron_rows`: a (neurons, fan_in) tensor back in the weight's shape."""
    shape = tuple(module.weight.shape)
    if not is_transposed(module):
        return rows.reshape(shape)
    g = module.groups
    c_in, c_out_g, *k = shape
    return rows.reshape(g, c_out_g, c_in // g, *k).transpose(1, 2).reshape(shape)


def per_neuron(module: nn.Module, values: torch.Tensor) -> torch.Tensor:
    """A per-neuron vector broadcast to (a tensor shaped like) the weight: each entry gets its neuron's value."""
    w = module.weight
    if not is_transposed(module):
        return values.view(-1, *([1] * (w.dim() - 1)))
    fan = w.numel() // values.numel()
    return from_neuron_rows(module, values[:, None].expand(-1, fan))


def neuron_ids(module: nn.Module) -> torch.Tensor:
    """Each weight entry's output neuron (int64, weight-shaped): what FlatLayout needs for a transposed conv."""
    n = neuron_count(module)
    ids = torch.arange(n, device=module.weight.device)[:, None].expand(n, module.weight.numel() // n)
    return from_neuron_rows(module, ids)


def maskable_layers(model: nn.Module, dense: Iterable[str] = ()) -> dict[str, nn.Module]:
    """The Linear/Conv modules of ``model`` by name, minus those named in ``dense``."""
    dense = [dense] if isinstance(dense, str) else list(dense)
    names = dict(model.named_modules())
    unknown = [d for d in dense if d not in names]
    if unknown:
        layers = [n for n, m in names.items() if isinstance(m, MASKABLE)]
        raise ValueError(f"dense= names no module {unknown}; maskable layers are: {', '.join(layers)}")
    return {n: m for n, m in names.items() if isinstance(m, MASKABLE) and n not in dense}


def weight_numel(model: nn.Module) -> int:
    """Entries of every weight tensor (a parameter with 2 or more dims) of ``model``, each counted once."""
    return sum(p.numel() for p in model.parameters() if p.dim() >= 2)


def unmaskable_weights(model: nn.Module, layers: dict[str, nn.Module], dense: Iterable[str] = ()) -> dict:
    """Weight tensors that no mask covers and that ``dense`` does not name: {"lstm.weight_ih_l0": "LSTM", ...}."""
    dense = [dense] if isinstance(dense, str) else list(dense)
    masked = {id(m) for m in layers.values()}
    seen = {id(m.weight) for m in layers.values()}
    found = {}
    for name, module in model.named_modules():
        if id(module) in masked or any(name == d or (d and name.startswith(d + ".")) for d in dense):
            continue
        for pname, p in module.named_parameters(recurse=False):
            if p.dim() >= 2 and id(p) not in seen:
                seen.add(id(p))
                found[f"{name}.{pname}" if name else pname] = type(module).__name__
    return found
