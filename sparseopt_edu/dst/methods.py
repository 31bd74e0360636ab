"""The DST methods: each is its scorer or grow rule on top of the generic core (``core.py``)."""
from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn

from .core import TINY, DynamicSparsity


class Static(DynamicSparsity):
    """No topology updates: the fixed random mask of ``sparsify`` (the static sparse baseline)."""

    name = "static"

    def __init__(self, masks, optimizer=None, **kwargs):
        for when in ("t_end", "total_steps", "t_end_steps"):  # it never updates, whatever the schedule says
            kwargs.pop(when, None)
        if kwargs.get("schedule") is not None:
            kwargs["schedule"] = dataclasses.replace(kwargs["schedule"], t_end=0)
        else:
            kwargs["t_end"] = 0
        super().__init__(masks, optimizer, **kwargs)


class SET(DynamicSparsity):
    """Sparse Evolutionary Training (Mocanu et al. 2018): drop by magnitude, grow uniformly at random.

    New weights start at 0, as in RigL's SET baseline (Mocanu's original drew them at random).
    """

    name = "set"

    def grow_scores(self, inputs):
        return inputs.noise()


class RigL(DynamicSparsity):
    """Rigged Lottery (Evci et al. 2020): drop by magnitude, grow where the dense gradient is largest.

    ``grow_from="raw"`` (default) scores growth with the raw, uncorrected dense gradient, as the paper
    recommends; ``"corrected"`` multiplies it by SparseOpt's per-neuron scale first (the paper's ablation, which
    lowers ITOP). The dense gradient exists only before masking, so it is snapshotted by a step pre-hook on
    update steps only.
    """

    name = "rigl"
    needs_gradient = True
    options = ("grow_from",)

    def __init__(self, masks, optimizer=None, *, grow_from: str = "raw", **kwargs):
        if grow_from not in ("raw", "corrected"):
            raise ValueError(f"grow_from must be 'raw' or 'corrected', got {grow_from!r}")
        self.grow_from = grow_from
        super().__init__(masks, optimizer, **kwargs)

    def grow_scores(self, inputs):
        g = inputs.gradient().float().abs()
        if self.grow_from == "corrected":
            g.mul_(inputs.neuron_scale())
        return g.add_(inputs.noise(), alpha=TINY)


class SRigL(RigL):
    """Structured RigL (Lasby et al., ICLR 2024): constant fan-in per active neuron, with neuron ablation.

    Budget rule: a layer with B live weights and n active neurons gives every active neuron B // n weights and
    the first B % n active neurons (in index order) one more. At each update the layer-wide drop and gradient
    ranking of RigL decide what is *salient* (kept by magnitude or chosen for growth); an active neuron with
    fewer than ``gamma_sal`` of its fan-in salient is ablated (permanently, here) and its budget redistributed,
    unless that would leave no neuron or more budget than the remaining neurons can hold. Each active neuron
    then keeps its surviving weights first and regrows by largest |gradient| up to its fan-in.
    With constant fan-in every active neuron has d_i = d_mean, so SparseOpt is exactly the inner optimizer.
    """

    name = "srigl"
    initial_fan_in = "constant"  # it keeps a constant fan-in; starting from one avoids a conversion (and a warning)
    options = ("grow_from", "gamma_sal")

    def __init__(self, masks, optimizer=None, *, gamma_sal: float = 0.3, **kwargs):
        if not 0.0 <= gamma_sal <= 1.0:
            raise ValueError(f"gamma_sal must be in [0, 1], got {gamma_sal}")
        self.gamma_sal = gamma_sal
        transposed = [n for n, m in masks.modules.items() if isinstance(m, nn.modules.conv._ConvTransposeNd)]
        if transposed:  # its per-neuron rule works on rows of the flat layout; their neurons are dim 1
            raise ValueError(
                f"SRigL's per-neuron rule needs each neuron's weights stored together, but the transposed "
                f"convolution(s) {transposed} keep an output channel along dim 1: keep them dense "
                f"(dense={transposed!r}) or use RigL or SET")
        super().__init__(masks, optimizer, **kwargs)
        self.active = {}
        converted = []
        for name, module in masks.modules.items():
            mask = module.weight_mask
            live = mask.flatten(1).sum(1)
            target = self.fan_in_targets(masks.live_count(name), live > 0)
            if not torch.equal(live, target):  # make it constant fan-in, keeping existing weights where possible
                converted.append(name)
                order = (mask.flatten(1).float() + torch.rand(live.shape[0], mask[0].numel(), device=mask.device)
                         * 0.5).argsort(dim=1, descending=True)
                new = _rows_from_order(order, target).view_as(mask)
                masks.apply_masks({name: new}, counts={name: masks.live_count(name)})
            self.active[name] = target > 0
        if converted:
            warnings.warn(
                f"SRigL made {len(converted)} layer(s) constant fan-in; connections it had to add start at 0. "
                "Use sparsify(..., fan_in='constant') to start from a constant fan-in mask.",
                stacklevel=2,
            )
        self._reset_union()

    @staticmethod
    def fan_in_targets(budget: int, active: torch.Tensor) -> torch.Tensor:
        """B // n per active neuron, +1 for the first B % n active ones; 0 for ablated ones."""
        n = active.sum().clamp_min(1)
        rank = active.long().cumsum(0) - 1
        return torch.where(active, budget // n + (rank < budget % n).long(), torch.zeros_like(rank))

    def new_mask(self, inputs):
        layout = inputs.layout
        # RigL's layer-wide decisions, all layers at once: survivors by magnitude, growth candidates by gradient.
        survivors = layout.top_per_layer(self.drop_scores(inputs), inputs.keep)
        grad = self.grow_scores(inputs)
        grow_pick = layout.top_per_layer(grad.masked_fill(survivors, float("-inf")), inputs.drop)
        flats = (inputs.old, survivors, grow_pick, grad, inputs.weight_abs())
        per_layer = zip(*(v.split(layout.sizes) for v in flats))
        blocks = []
        for i, (name, chunks) in enumerate(zip(self.masks.modules, per_layer)):  # per-neuron rule: per layer
            n_out = layout.rows[i]
            if layout.perms[i][0] != 0:
                raise ValueError(f"SRigL needs each neuron's weights stored together; {name!r} has strides "
                                 "that interleave neurons: make its weight contiguous or channels_last")
            old, surv, pick, g, w = (c.view(n_out, -1) for c in chunks)
            if not inputs.drop_host[i]:
                blocks.append(old.reshape(-1))
                continue
            blocks.append(self._neuron_rule(name, old, surv, pick, g, w).reshape(-1))
        return torch.cat(blocks)

    def _neuron_rule(self, name, old, survivors, grow_pick, grad, wa):
        """Ablate neurons with too few salient connections, then refill each active neuron to its fan-in."""
        n_out, fan = old.shape
        budget = self.masks.live_count(name)
        active = self.active[name]
        salient = (survivors | grow_pick).sum(1)
        current = old.sum(1)
        candidate = active & ~(salient < self.gamma_sal * current)
        n_left = candidate.sum()
        feasible = (n_left > 0) & (n_left * fan >= budget)
        active = torch.where(feasible, candidate, active)
        self.active[name] = active
        target = self.fan_in_targets(budget, active)
        # Per neuron: survivors first (by |w|), then growth by |gradient| (both scaled into disjoint ranges).
        score = torch.where(
            survivors, 2.0 + wa / wa.max().clamp_min(1e-30), grad / grad.max().clamp_min(1e-30)
        )
        order = score.argsort(dim=1, descending=True)
        return _rows_from_order(order, target)

    def state_dict(self):
        state = super().state_dict()
        state["active"] = {n: a.clone() for n, a in self.active.items()}
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.active = {n: a.to(self.active[n].device).clone() for n, a in state["active"].items()}


def _rows_from_order(order: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    """A (n_out, fan) mask taking the first per_row[i] entries of row i in ``order``."""
    n_out, fan = order.shape
    take = torch.arange(fan, device=order.device).expand(n_out, fan) < per_row[:, None]
    return torch.zeros(n_out, fan, dtype=torch.bool, device=order.device).scatter_(1, order, take)
