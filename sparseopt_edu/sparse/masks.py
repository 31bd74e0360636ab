"""SparseMasks: the masks of a model's masked layers, and the cached tensors the training step multiplies by.

How a mask is enforced is a measured performance decision (ENV.md): no ``weight * mask`` in the forward. The
inactive weights are kept exactly zero, and each masked ``.grad`` is multiplied in place, before the optimizer
step, by one cached tensor: the mask (baseline) or the mask times the per-neuron SparseOpt scale. With zeroed
optimizer state (optimizer_state.py) an *elementwise* optimizer then never moves an inactive weight, and the
unmasked backward still holds the dense gradient that RigL needs for growth.

Which layers are masked and what a neuron is in each: layers.py. How the first masks are drawn: build.py
(``sparsify``). Every topology change goes through :meth:`SparseMasks.apply_flat`, on the flat layout of flat.py.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from .flat import FlatLayout
from .layers import (
    is_transposed,
    neuron_count,
    neuron_ids,
    neuron_rows,
    weight_numel,
)
from .optimizer_state import OptimizerStates, attach, check_state_policy

__all__ = ["SparseMasks", "check_mask", "flat_layout"]


def check_mask(name: str, mask, shape: tuple) -> None:
    """A stored mask must be a boolean tensor of the weight's shape that keeps at least one weight.

    Why so strict: a float tensor (weights saved by mistake, or a mask scaled by something) would turn into
    ``!= 0``, i.e. an almost dense layer, without a word; an all-False mask breaks the at-least-one-weight rule
    that SparseOpt's per-layer mean density and the distributions rely on.
    """
    if not torch.is_tensor(mask):
        raise ValueError(f"mask {name!r} must be a boolean tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask {name!r} has dtype {mask.dtype}, not torch.bool: a SparseMasks state_dict holds boolean masks "
            "(was a weight saved in its place?). Convert a 0/1 mask with mask.bool() before loading it")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"mask {name!r} has shape {tuple(mask.shape)} but the layer's weight has shape {tuple(shape)}: "
            "the checkpoint was made for a different model")
    if not bool(mask.any()):
        raise ValueError(f"mask {name!r} keeps no weight: every masked layer keeps at least one (is the "
                         "checkpoint damaged?)")


class SparseMasks:
    """Per-layer boolean masks (the ``weight_mask`` buffer of each masked module) and their caches.

    Caches, refreshed in place whenever a mask changes (static addresses, so a captured CUDA graph stays valid):
    ``weight_grad_mask`` (the mask as the weight's dtype) and ``weight_grad_scale`` (mask x sqrt(d_i / d_mean),
    d_i the neuron's density and d_mean its mean over the layer's active neurons; 0 for a neuron with no live
    weight). Both are non-persistent buffers, so they follow ``model.to(...)``.
    """

    def __init__(self, model: nn.Module, modules: dict[str, nn.Module], *, state_policy: str = "zero"):
        self.optimizer_states = OptimizerStates(state_policy)  # checks the policy
        self.model = model
        self.modules = dict(modules)
        self.version = 0  # bumped on every mask change; caches elsewhere key on it
        self._counts: dict[str, int] = {}
        self._layout: FlatLayout | None = None
        self._hooks: list = []
        for name, module in self.modules.items():
            self._install(name, module)
        if self.modules:
            layout = self.layout()
            self._refresh(layout, self.modules, layout.gather([m.weight_mask for m in self.modules.values()]))

    # ----- construction -------------------------------------------------------------------------------------
    def _install(self, name: str, module: nn.Module) -> None:
        w = module.weight
        if "weight_mask" not in module._buffers:
            module.register_buffer("weight_mask", torch.ones_like(w, dtype=torch.bool))
        module.register_buffer("weight_grad_mask", torch.zeros_like(w), persistent=False)
        module.register_buffer("weight_grad_scale", torch.zeros_like(w), persistent=False)

        def fill_missing_mask(state_dict, prefix, *args, _module=module, _name=name):
            # A dense state_dict has no mask: keep ours (so strict loading works), the post-hook re-applies it.
            mask = state_dict.setdefault(prefix + "weight_mask", _module.weight_mask.clone())
            check_mask(_name, mask, tuple(_module.weight.shape))

        self._hooks.append(module._register_load_state_dict_pre_hook(fill_missing_mask))
        self._hooks.append(module.register_load_state_dict_post_hook(lambda mod, keys, _n=name: self._after_load(_n)))

    def _after_load(self, name: str) -> None:
        """A layer's state_dict was loaded: re-apply its (loaded) mask to its weight, optimizer state and caches.

        The flat code on a layout of this one layer, so loading a whole model costs O(N), not O(layers x N).
        """
        layer = {name: self.modules[name]}
        layout = flat_layout(layer.values())
        mask = layout.gather([layer[name].weight_mask])
        self._apply_flat(layout, layer, mask, old=mask)  # nothing grows: the mask is kept as loaded

    # ----- read access --------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self.modules[name].weight_mask

    def __iter__(self) -> Iterator[str]:
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)

    def __contains__(self, name: str) -> bool:
        return name in self.modules

    def items(self):
        return ((n, m.weight_mask) for n, m in self.modules.items())

    @property
    def names(self) -> list[str]:
        return list(self.modules)

    @property
    def weights(self) -> list[nn.Parameter]:
        return [m.weight for m in self.modules.values()]

    def live_count(self, name: str | None = None) -> int:
        """Live (unmasked) weights, known on the host without a sync."""
        return self._counts[name] if name is not None else sum(self._counts.values())

    def numel(self, name: str | None = None) -> int:
        if name is not None:
            return self.modules[name].weight.numel()
        return sum(m.weight.numel() for m in self.modules.values())

    def sparsity(self, per_layer: bool = False):
        """Fraction of zeros over the masked layers (global), or a dict per layer."""
        if per_layer:
            return {n: 1.0 - self._counts[n] / self.numel(n) for n in self.modules}
        return 1.0 - self.live_count() / self.numel()

    def model_sparsity(self) -> float:
        """Fraction of zeros over every weight tensor of the model (parameters with 2 or more dims), masked or not.

        Equal to :meth:`sparsity` when every weight is masked; lower when layers stay dense (``dense=``, or layers
        that cannot be masked: Embedding, LSTM, MultiheadAttention's ``in_proj_weight``, ...). Biases and norm
        scales are not weights here, as in :meth:`sparsity`.
        """
        total = weight_numel(self.model)
        return (self.numel() - self.live_count()) / total if total else 0.0

    def fan_in(self, name: str) -> int:
        module = self.modules[name]
        return module.weight.numel() // neuron_count(module)

    def neuron_live(self, name: str) -> torch.Tensor:
        """Live incoming weights per output neuron (int64, on the weight's device)."""
        return neuron_rows(self.modules[name], self[name]).sum(1)

    def neuron_rows(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` (shaped like layer ``name``'s weight) as one row per output neuron (see :func:`neuron_rows`)."""
        return neuron_rows(self.modules[name], t)

    def neuron_density(self, name: str | None = None):
        """Per-neuron density d_i = live_i / fan_in (float), one tensor per layer or for one layer."""
        if name is None:
            return {n: self.neuron_density(n) for n in self.modules}
        return self.neuron_live(name).float() / self.fan_in(name)

    def neuron_scale(self, name: str) -> torch.Tensor:
        """SparseOpt's per-neuron factor sqrt(d_i / d_mean); 0 for an empty neuron (docs/method.md section 2).

        Read back from the cache SparseOpt multiplies by (``weight_grad_scale`` = mask x factor), so this is the
        factor the step applies; :meth:`FlatLayout.density_ratio` is where it is computed.
        """
        module = self.modules[name]
        return neuron_rows(module, module.weight_grad_scale).amax(1)

    def active_neurons(self, name: str) -> torch.Tensor:
        return (self.neuron_live(name) > 0).sum()

    # ----- mask changes -------------------------------------------------------------------------------------
    @property
    def state_policy(self) -> str:
        """Where a grown entry's optimizer state starts: "zero" or "warm" (see :class:`OptimizerStates`)."""
        return self.optimizer_states.policy

    @state_policy.setter
    def state_policy(self, policy: str) -> None:
        self.optimizer_states.policy = check_state_policy(policy)

    def register_optimizer(self, optimizer) -> None:
        """Remember an optimizer whose per-element state must be zeroed when masks change."""
        self.optimizer_states.register(optimizer)

    def optimizers(self) -> list:
        return self.optimizer_states.optimizers()

    def set_mask(self, name: str, mask: torch.Tensor) -> None:
        """Replace one layer's mask: weights and optimizer state outside it become zero, caches refresh.

        Entries that become live start at zero (as in RigL growth); entries live before and after keep their
        value and optimizer state.
        """
        if name not in self.modules:
            raise KeyError(f"no masked layer named {name!r}; masked layers: {', '.join(self.modules)}")
        old = self[name]
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != tuple(old.shape):
            raise ValueError(
                f"mask for {name!r} has shape {tuple(mask.shape)}, but the weight has shape {tuple(old.shape)}"
            )
        mask = mask.to(device=old.device, dtype=torch.bool)
        if not bool(mask.any()):
            raise ValueError(f"mask for {name!r} keeps no weight: every masked layer keeps at least one")
        self.apply_masks({name: mask})

    def apply_masks(self, new_masks: dict[str, torch.Tensor], counts: dict[str, int] | None = None) -> None:
        """Install new masks (bool, right shape and device): the one place where topology changes.

        Entries live in both old and new mask keep weight and state; all others are zeroed (dropped ones,
        and grown ones, which start at 0). ``counts`` (live count per layer, when the caller knows them) saves
        a host sync. Layers not named keep their masks.
        """
        layout = self.layout()
        masks = [m.weight_mask for m in self.modules.values()]
        new = layout.gather([new_masks.get(n, m) for n, m in zip(self.modules, masks)])
        self.apply_flat(new, counts=counts)

    def apply_flat(self, new: torch.Tensor, old: torch.Tensor | None = None,
                   counts: dict[str, int] | None = None) -> None:
        """``apply_masks`` for every layer at once, from a flat mask in :meth:`layout` order (a fixed number of
        kernels, whatever the number of layers). ``old`` is the current flat mask when the caller has it;
        ``counts`` must name every layer whose mask changes (or be None: one host sync counts them)."""
        self._apply_flat(self.layout(), self.modules, new, old, counts)

    @torch.no_grad()
    def _apply_flat(self, layout: FlatLayout, modules: dict[str, nn.Module], new: torch.Tensor,
                    old: torch.Tensor | None = None, counts: dict[str, int] | None = None) -> None:
        """The one place where masks change: ``modules`` (the layers of ``layout``) get the flat mask ``new``."""
        layers = list(modules.values())
        weights = [m.weight for m in layers]
        if old is None:
            old = layout.gather([m.weight_mask for m in layers])
        keep = old & new
        torch._foreach_mul_(weights, layout.split_as(keep, weights))
        self.optimizer_states.zero_outside_(layout, weights, keep, new & ~old)
        layout.scatter_([m.weight_mask for m in layers], new)
        self._refresh(layout, modules, new, counts)
        self.version += 1

    def _refresh(self, layout: FlatLayout, modules: dict[str, nn.Module], new: torch.Tensor,
                 counts: dict[str, int] | None = None) -> None:
        """Refresh the cached grad mask and SparseOpt scale of ``modules`` (the layers of ``layout``) from their
        flat mask ``new``, and their live counts (``counts``, or one host sync)."""
        layers = list(modules.values())
        scale = layout.neuron_scale(new)
        layout.scatter_([m.weight_grad_mask for m in layers], new)
        dtype = layers[0].weight_grad_scale.dtype
        layout.scatter_([m.weight_grad_scale for m in layers], new.to(dtype) * scale.to(dtype))
        if counts is None:
            counts = dict(zip(modules, (int(c) for c in layout.layer_sum(new).tolist())))
        self._counts.update({n: int(c) for n, c in counts.items()})  # layers not in counts kept their masks

    def layout(self) -> FlatLayout:
        """The flat layout of the masked layers (rebuilt only when their device or memory format changed)."""
        weights = [m.weight for m in self.modules.values()]
        if self._layout is None or not self._layout.matches(weights):
            self._layout = flat_layout(self.modules.values())
        return self._layout

    # ----- the per-step hot path ----------------------------------------------------------------------------
    def mask_grads_(self, corrected: bool = False) -> None:
        """Multiply every masked ``.grad`` in place by the mask (or mask x SparseOpt scale): one foreach call."""
        key = "weight_grad_scale" if corrected else "weight_grad_mask"
        pairs = [(m.weight.grad, m._buffers[key]) for m in self.modules.values() if m.weight.grad is not None]
        if pairs:
            grads, scales = zip(*pairs)
            torch._foreach_mul_(list(grads), list(scales))

    def attach(self, optimizer, *, assume_elementwise: bool = False):
        """Mask gradients before every step of a plain torch optimizer (a step pre-hook); returns the handle.

        Without this (or SparseOpt, which does it itself), a sparsified model trained with a plain optimizer
        would silently densify: the backward pass produces dense gradients. :meth:`remove` removes the hook.
        """
        handle = attach(self, optimizer, assume_elementwise=assume_elementwise)
        self._hooks.append(handle)
        return handle

    # ----- checks, persistence, removal ---------------------------------------------------------------------
    @torch.no_grad()
    def checksums(self) -> torch.Tensor:
        """One float64 per layer that changes when any entry of the mask changes (for cross-rank checks)."""
        sums = []
        for module in self.modules.values():
            mask = module.weight_mask.flatten()
            idx = torch.arange(mask.numel(), device=mask.device, dtype=torch.int64)
            code = ((idx * 2654435761) % 1_000_003).double() + 1.0  # a fixed pseudo-random weight per position
            sums.append((code * mask).sum())
        return torch.stack(sums)

    def inactive_max(self) -> dict[str, float]:
        """Max |weight| and max |optimizer state| outside the masks (both must be exactly 0)."""
        w_max = torch.zeros(())
        s_max = torch.zeros(())
        with torch.no_grad():
            for module in self.modules.values():
                off = ~module.weight_mask
                w_max = torch.maximum(w_max, (module.weight.abs() * off).max().float().cpu())
                for opt in self.optimizers():
                    for value in opt.state.get(module.weight, {}).values():
                        if torch.is_tensor(value) and value.shape == module.weight.shape:
                            s_max = torch.maximum(s_max, (value.abs() * off).max().float().cpu())
        return {"weight": float(w_max), "optimizer_state": float(s_max)}

    def state_dict(self) -> dict:
        return {"masks": {n: m.detach().clone() for n, m in self.items()}, "state_policy": self.state_policy}

    def load_state_dict(self, state: dict) -> None:
        masks = state.get("masks") if isinstance(state, dict) else None
        if not isinstance(masks, dict):
            raise ValueError("not a SparseMasks state_dict: expected a dict with a 'masks' entry")
        if set(masks) != set(self.modules):
            raise ValueError(
                f"mask names do not match this model: missing {sorted(set(self.modules) - set(masks))}, "
                f"unexpected {sorted(set(masks) - set(self.modules))}. Was the checkpoint made for another model?"
            )
        new = {}
        for name, mask in masks.items():
            check_mask(name, mask, tuple(self[name].shape))
            new[name] = mask.to(device=self[name].device)
        self.state_policy = state.get("state_policy", self.state_policy)
        self.apply_masks(new)

    def remove(self) -> nn.Module:
        """Drop masks, caches and hooks: a plain model whose state_dict loads strictly into an unsparsified one.

        The weights keep their zeros: the model stays sparse in value, it just stops being kept sparse.
        """
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        for module in self.modules.values():
            for key in ("weight_mask", "weight_grad_mask", "weight_grad_scale"):
                module._buffers.pop(key, None)
        self.modules = {}
        self._counts = {}
        self._layout = None
        return self.model

    def __repr__(self) -> str:
        rows = [("layer", "shape", "sparsity", "active neurons")]
        for name, module in self.modules.items():
            w = module.weight
            sp = 1.0 - self._counts[name] / w.numel()
            rows.append((name, "x".join(map(str, w.shape)), f"{sp:.3f}", f"{int(self.active_neurons(name))}/{neuron_count(module)}"))
        rows.append(("total", f"{self.numel():,} weights", f"{self.sparsity():.3f}", ""))
        if self.modules and weight_numel(self.model) != self.numel():  # some weights are not masked
            rows.append(("whole model", f"{weight_numel(self.model):,} weights", f"{self.model_sparsity():.3f}", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in rows]
        return "SparseMasks(\n  " + "\n  ".join(lines) + "\n)"


def flat_layout(modules: Iterable[nn.Module]) -> FlatLayout:
    """The flat layout of these masked layers, each entry tied to its output neuron (a transposed conv's: dim 1)."""
    modules = list(modules)
    neurons = [None if not is_transposed(m) else (neuron_count(m), neuron_ids(m)) for m in modules]
    return FlatLayout([m.weight for m in modules], neurons)

