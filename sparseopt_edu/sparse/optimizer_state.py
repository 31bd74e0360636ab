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
        if policy not in STATE_POLICIES:
            raise ValueError(f"state_policy must be one of {STATE_POLICIES}, got {policy!r}")
        self.policy = policy
        self._refs: list[weakref.ref] = []

    def register(self, optimizer) -> None:
        """Remember an optimizer (SparseOpt: its inner one) whose per-element state must follow mask changes."""
        inner = getattr(optimizer, "optimizer", optimizer)
        if not any(ref() is inner for ref in self._refs):
            self._refs.append(weakref.ref(inner))

    def optimizers(self) -> list:
        alive = [ref() for ref in self._refs]
        return [o for o in alive if o is not None]

    def zero_outside_(self, layout, weights, keep: torch.Tensor, grown: torch.Tensor) -> None:
        """``zero_layer_`` for every layer from flat masks: one foreach multiply per kind of state."""
        if self.policy == "warm":
            for w, k, g in zip(weights, layout.split(keep), layout.split(grown)):
                self.zero_layer_(w, k, g)
            return
        keeps = None
        for opt in self.optimizers():
            by_key: dict[str, tuple[list, list]] = {}
            for i, w in enumerate(weights):
                for key, value in opt.state.get(w, {}).items():
                    if torch.is_tensor(value) and value.shape == w.shape:
                        if keeps is None:
                            keeps = layout.split(keep.to(value.dtype))
                        values, masks = by_key.setdefault(key, ([], []))
                        values.append(value)
                        masks.append(keeps[i] if keeps[i].dtype == value.dtype else keeps[i].to(value.dtype))
            for values, masks in by_key.values():
                torch._foreach_mul_(values, masks)

    def zero_layer_(self, weight: torch.Tensor, keep: torch.Tensor, grown: torch.Tensor | None = None) -> None:
        """Zero every per-element optimizer state shaped like the weight outside ``keep``.

        Generic on purpose: momentum_buffer (SGD), exp_avg / exp_avg_sq / max_exp_avg_sq (Adam, AdamW), square_avg
        (RMSprop)... Per-tensor scalars such as Adam's ``step`` are left alone, so a grown entry of Adam gets a
        first update of about 3.16 lr (m_hat/sqrt(v_hat) = 0.1/sqrt(0.001) once bias correction faded). The
        ``warm`` policy starts a grown entry's ``exp_avg_sq`` at the mean over the layer's surviving entries.
        """
        for opt in self.optimizers():
            state = opt.state.get(weight)
            if not state:
                continue
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == weight.shape:
                    if self.policy == "warm" and key == "exp_avg_sq" and grown is not None:
                        live = value[keep]
                        fill = live.mean() if live.numel() else value.new_zeros(())
                        value.mul_(keep)
                        value.add_(grown * fill)
                    else:
                        value.mul_(keep)
