"""SparseOpt: per-neuron correction of BatchNorm's gradient skew, wrapped around any elementwise optimizer.

docs/method.md section 2. With BN, every incoming gradient of neuron i is amplified by about (1 - s_i)^(-1/2). SparseOpt
multiplies it back by sqrt(d_i / d_mean) (d_i = 1 - s_i the neuron's density, d_mean its mean over the layer's
active neurons), then hands the corrected gradient to the inner optimizer. In this library that multiply is
the same in-place foreach multiply that enforces the mask, so the correction costs nothing extra.

Order of operations in ``step()`` (our decisions where the paper is silent):
1. pre-mask hooks (``register_pre_mask_hook``: RigL snapshots the raw dense gradient here, on update steps only);
2. ``.grad`` *= mask x scale (or mask alone with ``enabled=False``: the exact masked baseline);
3. optional gradient clipping, on the masked and corrected gradient;
4. the inner optimizer's step: momentum accumulates corrected gradients, its weight decay is not scaled.
After ``step()``, ``.grad`` holds exactly what the inner optimizer saw.

``scope="update"`` (our extension, not the paper's): the gradient is only masked, and the per-neuron factor
multiplies the inner optimizer's whole update instead (weight decay and momentum included), which makes it a
per-neuron learning rate. Why offer it: with BN and weight decay a neuron's weights are scale invariant and their
effective step settles where lr x weight decay puts it (van Laarhoven 2017; Wan et al. 2021), so a scale of the
gradient alone is largely undone over training, while a scale of the update is not (docs/method.md section 6).
"""
from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from .sparse import SparseMasks, check_elementwise
from .sparse.distributions import as_number

SCOPES = ("gradient", "update")


class SparseOpt(Optimizer):
    """Wrap ``optimizer`` (SGD, Adam, AdamW, ...) so it steps on masked, skew-corrected gradients.

    Shares the inner optimizer's ``param_groups``, ``state`` and ``defaults`` objects, so LR schedulers,
    ``add_param_group``, ``zero_grad`` and ``state_dict``/``load_state_dict`` work on the wrapper. Under AMP,
    ``GradScaler.step(wrapper)`` unscales the gradients before the correction (fused inner optimizers too: the
    wrapper does not advertise fused AMP scaling, so the scaler unscales first).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        masks: SparseMasks,
        *,
        enabled: bool = True,
        max_grad_norm: float | None = None,
        scope: str = "gradient",
        assume_elementwise: bool = False,
    ):
        if isinstance(optimizer, SparseOpt):
            raise TypeError("optimizer is already a SparseOpt; wrap the inner optimizer only once")
        if not isinstance(masks, SparseMasks):
            raise TypeError(f"masks must be the SparseMasks returned by sparsify(), got {type(masks).__name__}")
        check_elementwise(optimizer, assume_elementwise)
        if max_grad_norm is not None:
            number = as_number(max_grad_norm)
            if number is None or not number > 0 or not math.isfinite(number):
                raise ValueError(f"max_grad_norm must be a positive number or None, got {max_grad_norm!r}")
            max_grad_norm = float(number)
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES} (what the per-neuron factor scales), got {scope!r}")
        self.scope = scope
        self.optimizer = optimizer
        self.masks = masks
        self.enabled = bool(enabled)
        self.max_grad_norm = max_grad_norm
        self._prepared: list = []  # (weakref to .grad, its _version) after the last prepare_grads()
        self._before: list[torch.Tensor] = []  # scope="update": the weights before the inner step
        self._pre_mask_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._bound = False
        super().__init__(optimizer.param_groups, optimizer.defaults)  # sets up hooks; groups stay the inner's
        self._bound = True
        masks.register_optimizer(optimizer)

    # The wrapper owns no parameters or state of its own: everything reads through to the inner optimizer.
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value):
        if self.__dict__.get("_bound"):
            self.optimizer.param_groups = value

    @property
    def state(self):
        return self.optimizer.state

    @state.setter
    def state(self, value):
        if self.__dict__.get("_bound"):
            self.optimizer.state = value

    @property
    def defaults(self):
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value):
        if self.__dict__.get("_bound"):
            self.optimizer.defaults = value

    def add_param_group(self, param_group: dict) -> None:
        if self.__dict__.get("_bound"):  # during Optimizer.__init__ the groups already live in the inner one
            self.optimizer.add_param_group(param_group)

    def register_pre_mask_hook(self, hook: Callable[[SparseOpt], None]) -> RemovableHandle:
        """Call ``hook(self)`` right before the gradients are masked and corrected, while ``.grad`` still holds
        the raw dense gradient (RigL's growth signal): in :meth:`prepare_grads`, so in every ``step()``, after a
        closure's backward and before a manual ``prepare_grads()`` changes them. Returns a removable handle."""
        handle = RemovableHandle(self._pre_mask_hooks)
        self._pre_mask_hooks[handle.id] = hook
        return handle

    @torch.no_grad()
    def prepare_grads(self) -> None:
        """Mask and correct ``.grad`` now, e.g. to clip gradients yourself before ``step()``.

        Idempotent while the gradients stay as they are: ``step()`` skips the work only if every masked ``.grad``
        is the very tensor prepared here and unchanged since (same object, same version counter). Any later
        ``zero_grad``, backward or skipped AMP step therefore gets masked again, so a pruned weight never moves.
        """
        grads = [m.weight.grad for m in self.masks.modules.values() if m.weight.grad is not None]
        if grads and len(grads) == len(self._prepared) and all(
                ref() is g and g._version == version for (ref, version), g in zip(self._prepared, grads)):
            return  # these very tensors were prepared and nothing changed them since
        for hook in tuple(self._pre_mask_hooks.values()):
            hook(self)
        self.masks.mask_grads_(corrected=self.enabled and self.scope == "gradient")
        if self.max_grad_norm is not None:
            params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm, foreach=True)
        self._prepared = [(weakref.ref(g), g._version) for g in grads]  # the in-place ops kept the tensors

    def step(self, closure=None):
        """Mask (and correct) the gradients, then step the inner optimizer.

        A closure goes to the inner optimizer, wrapped so that the gradients it computes are masked and
        corrected before the inner optimizer reads them.
        """
        if closure is None:
            self.prepare_grads()
            inner_closure = None
        else:
            def inner_closure():
                loss = closure()
                self.prepare_grads()
                return loss
        if self.enabled and self.scope == "update":
            loss = self._step_scaling_update(inner_closure)
        else:
            loss = self.optimizer.step() if inner_closure is None else self.optimizer.step(inner_closure)
        self._prepared = []
        return loss

    @torch.no_grad()
    def _step_scaling_update(self, inner_closure):
        """w <- w_old + (mask x scale) * (inner step's w - w_old): a per-neuron learning rate, in 3 foreach calls."""
        modules = list(self.masks.modules.values())
        weights = [m.weight for m in modules]
        if len(self._before) != len(weights) or any(b.shape != w.shape for b, w in zip(self._before, weights)):
            self._before = [torch.empty_like(w) for w in weights]  # allocated once: fixed addresses for graphs
        torch._foreach_copy_(self._before, weights)
        loss = self.optimizer.step() if inner_closure is None else self.optimizer.step(inner_closure)
        torch._foreach_lerp_(self._before, weights, [m.weight_grad_scale for m in modules])
        torch._foreach_copy_(weights, self._before)
        return loss

    def state_dict(self) -> dict:
        state = super().state_dict()  # built from the shared groups/state, runs the wrapper's hooks
        state["sparseopt"] = {"enabled": self.enabled, "max_grad_norm": self.max_grad_norm, "scope": self.scope}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("sparseopt", None)
        self.optimizer.load_state_dict(state_dict)  # the inner class knows how to cast its own state
        if extra is not None:
            self.enabled = bool(extra["enabled"])
            self.max_grad_norm = extra["max_grad_norm"]
            self.scope = extra.get("scope", "gradient")

    def __repr__(self) -> str:
        state = f"on, scales the {self.scope}" if self.enabled else "off (masked baseline)"
        inner = "\n    ".join(repr(self.optimizer).splitlines())
        return f"SparseOpt(correction {state}, max_grad_norm={self.max_grad_norm},\n    {inner}\n)"
