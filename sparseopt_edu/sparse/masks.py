"""Sparse masks on a model's Linear/Conv2d weights, and the cached tensors the training step multiplies by.

How a mask is enforced is a measured performance decision (ENV.md): no ``weight * mask`` in the forward. The
inactive weights are kept exactly zero, and each masked ``.grad`` is multiplied in place, before the optimizer
step, by one cached tensor: the mask (baseline) or the mask times the per-neuron SparseOpt scale. With zeroed
optimizer state an *elementwise* optimizer then never moves an inactive weight, and the unmasked backward still
holds the dense gradient that RigL needs for growth.

A *neuron* is an output row of a Linear weight or an output channel of a convolution (docs/method.md section 2).
Masked: Linear, Conv1d, Conv2d and ConvTranspose2d. A transposed convolution stores its weight as
(C_in, C_out / groups, kh, kw), so its output channels are dim 1, not dim 0: every per-neuron quantity (fan-in,
live count, SparseOpt's scale, SRigL's rule) goes through :func:`neuron_rows`, which lays any masked weight out as
one row per output neuron. Layers that do not fit the neuron definition (Embedding, LSTM/GRU, MultiheadAttention's
``in_proj_weight``, Conv3d, ...) are left dense with a warning, and :meth:`SparseMasks.model_sparsity` reports the
sparsity of the whole model beside :meth:`SparseMasks.sparsity` of the masked layers.
"""
from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from .distributions import DISTRIBUTIONS, check_sparsity, layer_counts
from .flat import FlatLayout

MASKABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


def _transposed(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvTransposeNd)


def neuron_count(module: nn.Module) -> int:
    """Output neurons of a masked layer: rows of a Linear, output channels of a convolution."""
    w = module.weight
    return w.shape[1] * module.groups if _transposed(module) else w.shape[0]


def neuron_rows(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """``t`` (shaped like ``module.weight``) as (neurons, fan_in): row i holds the incoming weights of neuron i.

    For Linear/Conv this is ``t.flatten(1)``. A ConvTranspose2d weight is (C_in, C_out/g, kh, kw): output channel
    o = group * C_out/g + j reads input channels of its group only, so its row is ``t[group's inputs, j]``.
    """
    if not _transposed(module):
        return t.flatten(1)
    g = module.groups
    c_in, c_out_g, *k = t.shape
    return t.reshape(g, c_in // g, c_out_g, *k).transpose(1, 2).reshape(g * c_out_g, -1)


def from_neuron_rows(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`neuron_rows`: a (neurons, fan_in) tensor back in the weight's shape."""
    shape = tuple(module.weight.shape)
    if not _transposed(module):
        return rows.reshape(shape)
    g = module.groups
    c_in, c_out_g, *k = shape
    return rows.reshape(g, c_out_g, c_in // g, *k).transpose(1, 2).reshape(shape)


def per_neuron(module: nn.Module, values: torch.Tensor) -> torch.Tensor:
    """A per-neuron vector broadcast to (a tensor shaped like) the weight: each entry gets its neuron's value."""
    w = module.weight
    if not _transposed(module):
        return values.view(-1, *([1] * (w.dim() - 1)))
    fan = w.numel() // values.numel()
    return from_neuron_rows(module, values[:, None].expand(-1, fan))

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
        if state_policy not in STATE_POLICIES:
            raise ValueError(f"state_policy must be one of {STATE_POLICIES}, got {state_policy!r}")
        self.model = model
        self.modules = dict(modules)
        self.state_policy = state_policy
        self.version = 0  # bumped on every mask change; caches elsewhere key on it
        self._counts: dict[str, int] = {}
        self._layout: FlatLayout | None = None
        self._optimizers: list[weakref.ref] = []
        self._hooks: list = []
        for name, module in self.modules.items():
            self._install(name, module)
            self._refresh(name)

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
        module = self.modules[name]
        with torch.no_grad():
            module.weight.mul_(module.weight_mask)
            self._zero_state(module.weight, module.weight_mask)
        self._refresh(name)
        self.version += 1

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
        total = _weight_numel(self.model)
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
        """SparseOpt's per-neuron factor sqrt(d_i / d_mean); 0 for an empty neuron (docs/method.md section 2)."""
        live = self.neuron_live(name)
        return _density_ratio(live).sqrt().to(self.modules[name].weight.dtype)

    def active_neurons(self, name: str) -> torch.Tensor:
        return (self.neuron_live(name) > 0).sum()

    # ----- mask changes -------------------------------------------------------------------------------------
    def register_optimizer(self, optimizer) -> None:
        """Remember an optimizer whose per-element state must be zeroed when masks change."""
        inner = getattr(optimizer, "optimizer", optimizer)
        if not any(ref() is inner for ref in self._optimizers):
            self._optimizers.append(weakref.ref(inner))

    def optimizers(self) -> list:
        alive = [ref() for ref in self._optimizers]
        return [o for o in alive if o is not None]

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

    @torch.no_grad()
    def apply_flat(self, new: torch.Tensor, old: torch.Tensor | None = None,
                   counts: dict[str, int] | None = None) -> None:
        """``apply_masks`` for every layer at once, from a flat mask in :meth:`layout` order (a fixed number of
        kernels, whatever the number of layers). ``old`` is the current flat mask when the caller has it;
        ``counts`` must name every layer whose mask changes (or be None: one host sync counts them)."""
        layout = self.layout()
        modules = list(self.modules.values())
        weights = [m.weight for m in modules]
        if old is None:
            old = layout.gather([m.weight_mask for m in modules])
        keep = old & new
        torch._foreach_mul_(weights, layout.split_as(keep, weights))
        self._zero_states(weights, keep, new & ~old)
        layout.scatter_([m.weight_mask for m in modules], new)
        self._refresh_flat(new, counts)
        self.version += 1

    def _refresh_flat(self, new: torch.Tensor, counts: dict[str, int] | None = None) -> None:
        """Refresh every layer's cached grad mask and SparseOpt scale from the flat mask (as ``_refresh`` does)."""
        layout = self.layout()
        modules = list(self.modules.values())
        scale = layout.neuron_scale(new)
        layout.scatter_([m.weight_grad_mask for m in modules], new)
        dtype = modules[0].weight_grad_scale.dtype
        layout.scatter_([m.weight_grad_scale for m in modules], new.to(dtype) * scale.to(dtype))
        if counts is None:
            counts = dict(zip(self.modules, (int(c) for c in layout.layer_sum(new).tolist())))
        self._counts.update({n: int(c) for n, c in counts.items()})  # layers not in counts kept their masks

    def layout(self) -> FlatLayout:
        """The flat layout of the masked layers (rebuilt only when their device or memory format changed)."""
        weights = [m.weight for m in self.modules.values()]
        if self._layout is None or not self._layout.matches(weights):
            neurons = [None if not _transposed(m) else (neuron_count(m), self._neuron_ids(m))
                       for m in self.modules.values()]
            self._layout = FlatLayout(weights, neurons)
        return self._layout

    @staticmethod
    def _neuron_ids(module: nn.Module) -> torch.Tensor:
        """Each weight entry's output neuron (int64, weight-shaped): what FlatLayout needs for a transposed conv."""
        n = neuron_count(module)
        ids = torch.arange(n, device=module.weight.device)[:, None].expand(n, module.weight.numel() // n)
        return from_neuron_rows(module, ids)

    def _zero_states(self, weights, keep: torch.Tensor, grown: torch.Tensor) -> None:
        """``_zero_state`` for every layer from flat masks: one foreach multiply per kind of state."""
        layout = self.layout()
        if self.state_policy == "warm":
            for w, k, g in zip(weights, layout.split(keep), layout.split(grown)):
                self._zero_state(w, k, g)
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

    def _zero_state(self, weight: torch.Tensor, keep: torch.Tensor, grown: torch.Tensor | None = None) -> None:
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
                    if self.state_policy == "warm" and key == "exp_avg_sq" and grown is not None:
                        live = value[keep]
                        fill = live.mean() if live.numel() else value.new_zeros(())
                        value.mul_(keep)
                        value.add_(grown * fill)
                    else:
                        value.mul_(keep)

    def _refresh(self, name: str, count: int | None = None) -> None:
        module = self.modules[name]
        mask = module.weight_mask
        live = neuron_rows(module, mask).sum(1)
        scale = _density_ratio(live).sqrt_().to(module.weight_grad_scale.dtype)
        module.weight_grad_mask.copy_(mask)
        torch.mul(module.weight_grad_mask, per_neuron(module, scale), out=module.weight_grad_scale)
        self._counts[name] = int(live.sum()) if count is None else count

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
        would silently densify: the backward pass produces dense gradients.
        """
        if hasattr(optimizer, "masks") and hasattr(optimizer, "optimizer"):
            raise TypeError("SparseOpt already masks gradients; attach() is for plain torch optimizers")
        check_elementwise(optimizer, assume_elementwise)
        self.register_optimizer(optimizer)
        handle = optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.mask_grads_(corrected=False))
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
        if self.modules and _weight_numel(self.model) != self.numel():  # some weights are not masked
            rows.append(("whole model", f"{_weight_numel(self.model):,} weights", f"{self.model_sparsity():.3f}", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in rows]
        return "SparseMasks(\n  " + "\n  ".join(lines) + "\n)"


def _density_ratio(live: torch.Tensor) -> torch.Tensor:
    """d_i / d_mean with d_mean over active neurons, computed from integer counts so it is exact.

    d_i / d_mean = live_i * n_active / sum(live): under constant fan-in this is exactly 1.0, so SparseOpt is
    then exactly the inner optimizer.
    """
    dtype = torch.float64 if live.device.type in ("cpu", "cuda") else torch.float32
    n_active = (live > 0).sum()
    return live.to(dtype) * n_active.to(dtype) / live.sum().clamp_min(1).to(dtype)


def maskable_layers(model: nn.Module, dense: Iterable[str] = ()) -> dict[str, nn.Module]:
    """The Linear/Conv2d modules of ``model`` by name, minus those named in ``dense``."""
    dense = [dense] if isinstance(dense, str) else list(dense)
    names = dict(model.named_modules())
    unknown = [d for d in dense if d not in names]
    if unknown:
        layers = [n for n, m in names.items() if isinstance(m, MASKABLE)]
        raise ValueError(f"dense= names no module {unknown}; maskable layers are: {', '.join(layers)}")
    return {n: m for n, m in names.items() if isinstance(m, MASKABLE) and n not in dense}


def _weight_numel(model: nn.Module) -> int:
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
    distribution: str = "erk",
    *,
    dense: Iterable[str] = (),
    seed: int = 0,
    fan_in: str = "random",
    init: str = "dense",
    state_policy: str = "zero",
) -> SparseMasks:
    """Mask every nn.Linear / nn.Conv2d of ``model`` (except ``dense``) at a global ``sparsity``.

    ``weight`` stays the module's leaf Parameter; a boolean ``weight_mask`` buffer is registered beside it and
    the masked weights are zeroed. The total live count is exactly round((1 - sparsity) * N) over the masked
    layers. ``init="dense"`` keeps PyTorch's dense init, then masks (the regime the paper analyses);
    ``init="sparse"`` rescales each neuron by sqrt(fan_in / live_i), so its pre-activation variance matches a
    dense neuron's and the skew vanishes at step 0.
    """
    sparsity = check_sparsity(sparsity)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}: choose one of {', '.join(DISTRIBUTIONS)}")
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
        whole = (masked - sum(counts.values())) / _weight_numel(model)
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
            if _transposed(module):  # drawn one row per output neuron, then laid out as the weight
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
