"""SparseOpt: per-neuron correction of BatchNorm's gradient skew, wrapped around any elementwise optimizer.

docs/method.md section 2. With BN, every incoming gradient of neuron i is amplified by about (1 - s_i)^(-1/2). SparseOpt
multiplies it back by sqrt(d_i / d_mean) (d_i = 1 - s_i the neuron's density, d_mean its mean over the layer's
active neurons), then hands the corrected gradient to the inner optimizer. In this library that multiply is
the same in-place foreach multiply that enforces the mask, so the correction costs nothing extra.

Order of operations in ``step()`` (our decisions where the paper is silent):
1. step pre-hooks (RigL snapshots the raw dense gradient here, on update steps only);
2. ``.grad`` *= mask x scale (or mask alone with ``enabled=False``: the exact masked baseline);
3. optional gradient clipping, on the masked and corrected gradient;
4. the inner optimizer's step: momentum accumulates corrected gradients, its weight decay is not scaled.
After ``step()``, ``.grad`` holds exactly what the inner optimizer saw.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from .sparse.masks import SparseMasks, check_elementwise


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
        assume_elementwise: bool = False,
    ):
        if isinstance(optimizer, SparseOpt):
            raise TypeError("optimizer is already a SparseOpt; wrap the inner optimizer only once")
        if not isinstance(masks, SparseMasks):
            raise TypeError(f"masks must be the SparseMasks returned by sparsify(), got {type(masks).__name__}")
        check_elementwise(optimizer, assume_elementwise)
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive or None, got {max_grad_norm}")
        self.optimizer = optimizer
        self.masks = masks
        self.enabled = bool(enabled)
        self.max_grad_norm = max_grad_norm
        self._prepared = False
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

    @torch.no_grad()
    def prepare_grads(self) -> None:
        """Mask and correct ``.grad`` now (idempotent until the next step), e.g. to clip gradients yourself."""
        if self._prepared:
            return
        self.masks.mask_grads_(corrected=self.enabled)
        if self.max_grad_norm is not None:
            params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm, foreach=True)
        self._prepared = True

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.prepare_grads()
        self.optimizer.step()
        self._prepared = False
        return loss

    def state_dict(self) -> dict:
        state = super().state_dict()  # built from the shared groups/state, runs the wrapper's hooks
        state["sparseopt"] = {"enabled": self.enabled, "max_grad_norm": self.max_grad_norm}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("sparseopt", None)
        self.optimizer.load_state_dict(state_dict)  # the inner class knows how to cast its own state
        if extra is not None:
            self.enabled = bool(extra["enabled"])
            self.max_grad_norm = extra["max_grad_norm"]

    def __repr__(self) -> str:
        state = "on" if self.enabled else "off (masked baseline)"
        inner = "\n    ".join(repr(self.optimizer).splitlines())
        return f"SparseOpt(correction {state}, max_grad_norm={self.max_grad_norm},\n    {inner}\n)"
