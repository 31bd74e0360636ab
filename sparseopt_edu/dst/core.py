"""One generic drop-then-grow core; SET, RigL and SRigL differ only in how they score and grow.

Precise rules (docs/method.md section 4): per layer drop floor(f * n_active) live connections with the smallest |w|
(ties broken by tiny seeded noise), then grow as many among the non-survivors (a connection dropped in this
update may come back, and then keeps its value and state). What changes is the net difference between the old
and the new mask: grown weights start at exactly 0, and every per-element optimizer state of dropped and grown
entries is zeroed. The optimizer step still runs on an update step; the topology changes after it.

An update costs one host sync (to check live counts, finiteness and that no pruned weight moved), not one per
layer; between updates ``step()`` costs nothing but an integer comparison.
"""
from __future__ import annotations

import torch

from ..sparse.masks import SparseMasks, check_elementwise
from .schedule import UpdateSchedule

TINY = 1e-30  # tie-break noise: orders exact ties (e.g. weights regrown at 0) without reordering real values


class MaskDisagreement(RuntimeError):
    """Ranks of a distributed run ended a topology update with different masks."""


def check_ranks_agree(masks: SparseMasks, step: int) -> None:
    """Under torch.distributed, stop with a clear error if the ranks' masks differ (one small all-reduce).

    Masks agree by construction (gradients are all-reduced by DDP before the snapshot, random choices come from
    a generator seeded by (seed, step, layer)); this checks it after every update instead of trusting it.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    modules = list(masks.modules.values())
    with torch.no_grad():  # per layer: mask checksum, weight sum, SparseOpt-scale sum (bitwise equal under DDP)
        sums = torch.stack([masks.checksums(),
                            torch.stack([m.weight.detach().double().sum() for m in modules]),
                            torch.stack([m.weight_grad_scale.double().sum() for m in modules])])
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    differ = (low != high).nonzero().tolist()
    if differ:
        what = ("masks", "weights", "SparseOpt scales")
        found = sorted({f"{what[i]} of {masks.names[j]}" for i, j in differ})
        raise MaskDisagreement(
            f"after the topology update at step {step}, rank {dist.get_rank()} differs from other ranks in "
            f"{', '.join(found)}. Ranks must see identical gradients (DDP) and use the same DST seed."
        )


class DynamicSparsity:
    """Base class: owns the schedule, the step counter, the ITOP union and the update loop.

    Usage: ``dst = RigL(masks, optimizer, delta_t=100, alpha=0.3, t_end=0.75, total_steps=T)``, then
    ``dst.step()`` after every ``optimizer.step()``; it returns whether the topology changed.
    """

    needs_gradient = False

    def __init__(
        self,
        masks: SparseMasks,
        optimizer=None,
        *,
        delta_t: int = 100,
        alpha: float = 0.3,
        t_end: float | int = 0.75,
        total_steps: int | None = None,
        seed: int = 0,
        assume_elementwise: bool = False,
    ):
        if not isinstance(masks, SparseMasks):
            raise TypeError(f"masks must be the SparseMasks returned by sparsify(), got {type(masks).__name__}")
        self.masks = masks
        self.optimizer = optimizer
        self.schedule = UpdateSchedule.build(delta_t, alpha, t_end, total_steps)
        self.seed = seed
        self.t = 0
        self.updates: list[dict] = []  # one record per topology update (or skipped update)
        self._union = {n: m.clone() for n, m in masks.items()}  # for the ITOP rate
        self._grads: dict[str, torch.Tensor] = {}
        self._grads_step = -1
        self._hook = None
        if optimizer is not None:
            check_elementwise(optimizer, assume_elementwise)
            masks.register_optimizer(optimizer)
            if self.needs_gradient:
                self._hook = optimizer.register_step_pre_hook(self._snapshot_hook)
                # run before any masking hook registered earlier (masks.attach): we need the raw dense gradient
                optimizer._optimizer_step_pre_hooks.move_to_end(self._hook.id, last=False)
        elif self.needs_gradient:
            raise ValueError(f"{type(self).__name__} grows from gradients: pass the optimizer")

    # ----- gradient snapshot (RigL) -------------------------------------------------------------------------
    def _snapshot_hook(self, optimizer, args, kwargs) -> None:
        if self.schedule.is_update(self.t + 1):
            self.snapshot_gradients(self.t + 1)

    @torch.no_grad()
    def snapshot_gradients(self, step: int | None = None) -> None:
        """Copy the raw dense gradient of every masked layer (only ever on update steps)."""
        self._grads = {
            n: m.weight.grad.detach().clone() for n, m in self.masks.modules.items() if m.weight.grad is not None
        }
        self._grads_step = self.t + 1 if step is None else step

    # ----- the schedule -------------------------------------------------------------------------------------
    def step(self) -> bool:
        self.t += 1
        if not self.schedule.is_update(self.t):
            return False
        return self.update()

    @torch.no_grad()
    def update(self) -> bool:
        """Drop and grow in every masked layer now (normally called by ``step()``)."""
        t = self.t
        fraction = self.schedule.drop_fraction(t)
        if self.needs_gradient and self._grads_step != t:
            self.updates.append({"step": t, "drop_fraction": fraction, "skipped": "no gradient for this step"})
            return False
        new_masks, checks, expected = {}, [], {}
        for index, (name, module) in enumerate(self.masks.modules.items()):
            n_active = self.masks.live_count(name)
            k = self.schedule.drop_count(t, n_active)
            if k == 0:
                continue
            old = module.weight_mask
            gen = torch.Generator(device=old.device).manual_seed(self._layer_seed(t, index))
            new = self.new_mask(name, module, k, gen)
            new_masks[name], expected[name] = new, n_active
            checks += [new.sum(), (new & ~old).sum()]
        if not new_masks:  # late in the schedule floor(f * n) can be 0 everywhere: nothing to change
            self.updates.append({"step": t, "drop_fraction": fraction, "changed": {}})
            return False
        modules = list(self.masks.modules.values())
        weights = [m.weight.detach() for m in modules]
        # foreach norms: a handful of kernels for all layers instead of a few per layer
        norms = torch._foreach_norm(list(self._grads.values()) + weights)
        finite = torch.isfinite(torch.stack(norms)).all()
        outside = torch._foreach_addcmul(weights, weights, [m.weight_grad_mask for m in modules], value=-1)
        leaked = torch.stack(torch._foreach_norm(outside, float("inf"))).max()
        summary = torch.stack([c.double() for c in checks] + [finite.double(), leaked.double()]).tolist()
        # ^ the one host sync of this update
        counts, (finite, leaked) = summary[:-2], summary[-2:]
        if not finite:
            self.updates.append({"step": t, "drop_fraction": fraction, "skipped": "non-finite gradient or weight"})
            self._grads = {}
            return False
        if leaked != 0.0:
            raise RuntimeError(
                f"pruned weights moved (max |w| outside the masks = {leaked:.3g}): the optimizer updated "
                "inactive weights. Wrap it with SparseOpt(optimizer, masks) or call masks.attach(optimizer)."
            )
        live, changed = counts[0::2], counts[1::2]
        for (name, n_expected), n_live in zip(expected.items(), live):
            if int(n_live) != n_expected:
                raise RuntimeError(f"live count of {name!r} changed from {n_expected} to {int(n_live)}: drop/grow bug")
        self.masks.apply_masks(new_masks, counts=expected)
        check_ranks_agree(self.masks, t)
        for name, new in new_masks.items():
            self._union[name] |= new
        self.updates.append({
            "step": t,
            "drop_fraction": fraction,
            "changed": {n: int(c) for n, c in zip(new_masks, changed)},
        })
        self._grads = {}
        return True

    def _layer_seed(self, t: int, index: int) -> int:
        # A generator seeded by (seed, step, layer): identical choices on every rank and on resume.
        return (self.seed * 1_000_003 + t * 7_919 + index * 104_729) % (2**63 - 1)

    # ----- what subclasses change ---------------------------------------------------------------------------
    def drop_scores(self, name: str, module, gen: torch.Generator) -> torch.Tensor:
        """Keep-score of each live connection (|w|, ties broken by noise); -inf for inactive ones."""
        w = module.weight.detach()
        noise = torch.rand(w.shape, generator=gen, device=w.device, dtype=w.dtype)
        return torch.where(module.weight_mask, w.abs(), float("-inf")).add_(noise, alpha=TINY)

    def grow_scores(self, name: str, module, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def new_mask(self, name: str, module, k: int, gen: torch.Generator) -> torch.Tensor:
        """Drop the k weakest live connections, grow k among the non-survivors (the generic core)."""
        old = module.weight_mask
        n_active = self.masks.live_count(name)
        keep_idx = torch.topk(self.drop_scores(name, module, gen).flatten(), n_active - k).indices
        survivors = torch.zeros(old.numel(), dtype=torch.bool, device=old.device)
        survivors[keep_idx] = True
        grow = self.grow_scores(name, module, gen).flatten().masked_fill_(survivors, float("-inf"))
        survivors[torch.topk(grow, k).indices] = True
        return survivors.view_as(old)

    # ----- diagnostics and persistence ----------------------------------------------------------------------
    def itop_rate(self) -> float:
        """In-time over-parameterisation: |union of all masks seen| / |parameters| (Liu et al. 2021)."""
        seen = torch.stack([u.sum() for u in self._union.values()]).sum()
        return float(seen) / self.masks.numel()  # one host sync for all layers

    def state_dict(self) -> dict:
        return {
            "t": self.t, "seed": self.seed, "updates": list(self.updates),
            "union": {n: u.clone() for n, u in self._union.items()},
            "schedule": {"delta_t": self.schedule.delta_t, "alpha": self.schedule.alpha, "t_end": self.schedule.t_end},
        }

    def load_state_dict(self, state: dict) -> None:
        if set(state.get("union", {})) != set(self._union):
            raise ValueError("DST state was saved for other layers: was the checkpoint made for another model?")
        self.t = int(state["t"])
        self.seed = int(state["seed"])
        self.updates = list(state["updates"])
        self._union = {n: u.to(self._union[n].device, torch.bool).clone() for n, u in state["union"].items()}
        self.schedule = UpdateSchedule(**state["schedule"])

    def remove(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def __repr__(self) -> str:
        s = self.schedule
        return f"{type(self).__name__}(delta_t={s.delta_t}, alpha={s.alpha}, t_end={s.t_end}, step={self.t})"
