"""Keeping an optimizer's per-element state consistent with the masks.

The masks are enforced without ``weight * mask`` in the forward (masks.py): inactive weights are exactly zero and
their gradients are masked before each step. An inactive weight then stays zero only if the optimizer's update of
an entry depends on that entry alone (an *elementwise* optimizer) and the entry's optimizer state is zero too. So
this module refuses optimizers that mix entries, remembers the optimizers whose state follows the masks, and
zeroes that state outside the masks whenever the topology changes.
"""
from __future__ import annotations

import weakref

import torch

# Optimizers whose update of an entry depends only on that entry's gradient and state: with the gradient and
# state of an inactive weight at zero, its value (zero) never changes. LBFGS, Muon, Shampoo-like optimizers mix
# entries and would leak into pruned weights.
ELEMENTWISE_OPTIMIZERS = tuple(
    getattr(torch.optim, n)
    for n in ("SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta", "ASGD", "Rprop")
    if hasattr(torch.optim, n)
)

STATE_POLICIES = ("zero", "warm")


def check_state_policy(policy: str) -> str:
    if policy not in STATE_POLICIES:
        raise ValueError(f"state_policy must be one of {STATE_POLICIES}, got {policy!r}")
    return policy


def check_elementwise(optimizer, assume_elementwise: bool = False) -> None:
    """Refuse optimizers that would move inactive weights (see module docstring)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # unwrap SparseOpt
    if not isinstance(inner, torch.optim.Optimizer):
        raise TypeError(f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if assume_elementwise or isinstance(inner, ELEMENTWISE_OPTIMIZERS):
        return
    raise TypeError(
        f"{type(inner).__name__} is not an elementwise optimizer: it mixes entries of a tensor, so it would move "
        "pruned (inactive) weights away from zero. Use SGD, Adam, AdamW, RMSprop or another elementwise "
        "optimizer; if yours is elementwise, pass assume_elementwise=True."
    )


def attach(masks, optimizer, *, assume_elementwise: bool = False):
    """Mask ``masks``' gradients before every step of a plain torch optimizer (a step pre-hook); returns the handle.

    Without this (or SparseOpt, which does it itself), a sparsified model trained with a plain optimizer would
    silently densify: the backward pass produces dense gradients.
    """
    if hasattr(optimizer, "masks") and hasattr(optimizer, "optimizer"):
        raise TypeError("SparseOpt already masks gradients; attach() is for plain torch optimizers")
    check_elementwise(optimizer, assume_elementwise)
    masks.register_optimizer(optimizer)
    return optimizer.register_step_pre_hook(lambda opt, args, kwargs: masks.mask_grads_(corrected=False))


class OptimizerStates:
    """The optimizers whose per-element state follows the masks, and the rule a changed topology applies to it.

    Held by weak reference: registering an optimizer does not keep it alive. ``policy`` says where a grown
    entry's state starts: ``"zero"`` (RigL's choice) or ``"warm"`` (Adam's ``exp_avg_sq`` at the layer's mean).
    """

    def __init__(self, policy: str = "zero"):
        self.policy = check_state_policy(policy)
        self._refs: list[weakref.ref] = []

    def register(self, optimizer) -> None:
        """Remember an optimizer (SparseOpt: its inner one) whose per-element state must follow mask changes."""
        inner = getattr(optimizer, "optimizer", optimizer)
        if not any(ref() is inner for ref in self._refs):
            self._refs.append(weakref.ref(inner))

    def optimizers(self) -> list:
        alive = [ref() for ref in self._refs]
        return [o for o in alive if o is not None]

    @torch.no_grad()
    def zero_outside_(self, layout, weights: list, keep: torch.Tensor, grown: torch.Tensor | None = None) -> None:
        """Zero every per-element optimizer state of ``weights`` outside the flat mask ``keep`` (``layout`` order).

        One foreach multiply per kind of state, whatever the number of layers. Generic on purpose: momentum_buffer
        (SGD), exp_avg / exp_avg_sq / max_exp_avg_sq (Adam, AdamW), square_avg (RMSprop)... Per-tensor scalars
        such as Adam's ``step`` are left alone, so a grown entry of Adam gets a first update of about 3.16 lr
        (m_hat/sqrt(v_hat) = 0.1/sqrt(0.001) once bias correction faded). Under the ``warm`` policy the
        ``grown`` entries' ``exp_avg_sq`` starts at the mean over their layer's kept entries instead.
        """
        keeps: dict[torch.dtype, list[torch.Tensor]] = {}  # ``keep`` split per layer, once per state dtype
        for opt in self.optimizers():
            by_key: dict[str, dict[int, torch.Tensor]] = {}
            for i, w in enumerate(weights):
                for key, value in opt.state.get(w, {}).items():
                    if torch.is_tensor(value) and value.shape == w.shape:
                        by_key.setdefault(key, {})[i] = value
            for key, values in by_key.items():
                for dtype in {v.dtype for v in values.values()} - keeps.keys():
                    keeps[dtype] = layout.split(keep.to(dtype))
                torch._foreach_mul_(list(values.values()), [keeps[v.dtype][i] for i, v in values.items()])
                if self.policy == "warm" and key == "exp_avg_sq" and grown is not None:
                    self._warm_start_(layout, values, keep, grown)

    @staticmethod
    def _warm_start_(layout, values: dict[int, torch.Tensor], keep: torch.Tensor, grown: torch.Tensor) -> None:
        """Add to each grown entry its layer's mean ``exp_avg_sq`` over kept entries (``values``: already zeroed
        outside ``keep``, by layer index; a layer without state counts as zeros). Segmented sums: no host sync."""
        parts = [values[i] if i in values else torch.zeros(s, dtype=torch.float64, device=layout.device)
                 for i, s in enumerate(layout.shapes)]
        mean = layout.layer_sum(layout.gather(parts)) / layout.layer_sum(keep).clamp_min(1)
        fills = layout.split(grown * mean[layout.layer_of])  # float64
        torch._foreach_add_(list(values.values()), [fills[i].to(v.dtype) for i, v in values.items()])
