"""One generic drop-then-grow core; SET, RigL and SRigL differ only in how they score and grow.

Precise rules (docs/method.md section 4): per layer drop floor(f * n_active) live connections with the smallest |w|
(ties broken by tiny seeded noise), then grow as many among the non-survivors (a connection dropped in this
update may come back, and then keeps its value and state). What changes is the net difference between the old
and the new mask: grown weights start at exactly 0, and every per-element optimizer state of dropped and grown
entries is zeroed. The optimizer step still runs on an update step; the topology changes after it.

All layers are decided at once on one flat vector (``sparse/flat.py``): a segmented ranking replaces the per-layer
top-k, so an update is a fixed number of kernels (about 60) whatever the depth of the model, plus one host read
(to check live counts, finiteness and that no pruned weight moved, and to read the ITOP rate and fan-in spread
for the record). Between updates ``step()`` costs nothing but an integer comparison.

That read is the only thing an update waits for. With ``defer_checks=True`` (the trainer's choice on CUDA) it is
postponed: the update is queued on the device as it stands (a non-finite input is skipped there, by keeping the
old mask), and the checks and the record are done by :meth:`DynamicSparsity.flush`, which reading ``updates``
calls, in one host read for every update pending. The GPU then never idles while an update is launched; a failed
check raises at that later read instead of at once.
"""
from __future__ import annotations

import threading
import weakref

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ..sparse import SparseMasks, check_elementwise
from ..sparse.flat import FlatLayout
from .schedule import UpdateSchedule, count_to_drop

TINY = 1e-30  # tie-break noise: orders exact ties (e.g. weights regrown at 0) without reordering real values


class MaskDisagreement(RuntimeError):
    """Ranks of a distributed run ended a topology update with different masks."""


def check_ranks_agree(masks: SparseMasks, step: int) -> None:
    """Under torch.distributed, stop with a clear error if the ranks' masks differ (one small all-reduce).

    Masks agree by construction (gradients are all-reduced by DDP before the snapshot, random choices come from
    a generator seeded by (seed, step)); this checks it after every update instead of trusting it.
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


def _snapshot_before_masking(dst: DynamicSparsity, optimizer):
    """Make ``dst`` take the gradient snapshot on update steps, before the gradients are masked; returns the handle.

    An optimizer that masks the gradients itself (SparseOpt) calls its pre-mask hooks right before it does, in
    ``prepare_grads`` (a manual call before ``step()`` and a closure's gradients included). A plain optimizer is
    masked by ``masks.attach``'s step pre-hook, which may have been registered before this DST: torch runs the
    hooks common to all optimizers (``register_optimizer_step_pre_hook``) before each optimizer's own, so the
    snapshot is taken by one of those, for this optimizer only. Both hold the DST weakly (the global hook must
    not keep it alive) and are removed with it.
    """
    ref = weakref.ref(dst)

    def snapshot() -> None:
        d = ref()
        if d is not None and d.schedule.is_update(d.t + 1) and d._grads_step != d.t + 1:
            d.take_gradient_snapshot(d.t + 1)  # (a driver that already gave this step's snapshot is not repeated)

    if callable(getattr(optimizer, "register_pre_mask_hook", None)):
        handle = optimizer.register_pre_mask_hook(lambda opt: snapshot())
    else:
        handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: snapshot() if opt is optimizer else None)
    weakref.finalize(dst, handle.remove)
    return handle


class UpdateInputs:
    """What one topology update reads, gathered once into the flat layout (``FlatLayout``) of all masked layers.

    ``old`` the current mask; ``drop`` / ``keep`` per-layer counts on the device (``drop_host``: the same drop
    counts as Python ints, by the same function, ``count_to_drop``); ``gen`` this update's generator, seeded by
    (seed, step): the same choices on every rank and on resume. ``weight_abs()``, ``gradient()`` and ``noise()``
    are computed on first use.
    """

    def __init__(self, dst: DynamicSparsity, t: int, fraction: float, drop_host: list[int]):
        self.dst, self.t, self.drop_host = dst, t, drop_host
        self.layout: FlatLayout = dst.masks.layout()
        self.modules = list(dst.masks.modules.values())
        self.old = self.layout.gather([m.weight_mask for m in self.modules])
        live = self.layout.layer_sum(self.old)
        self.drop = count_to_drop(fraction, live)  # (live: float64) == drop_host, computed on the host
        self.keep = live - self.drop
        self.gen = torch.Generator(device=self.old.device).manual_seed(dst._update_seed(t))
        self._weight_abs = None

    def weight_abs(self) -> torch.Tensor:
        if self._weight_abs is None:
            self._weight_abs = self.layout.gather([m.weight.detach() for m in self.modules]).float().abs_()
        return self._weight_abs

    def gradient(self) -> torch.Tensor:
        """The raw dense gradient snapshotted on this update step (RigL)."""
        return self.dst.gradient_snapshot

    def noise(self) -> torch.Tensor:
        """Uniform [0, 1) noise, one draw per entry (each call draws afresh from this update's generator)."""
        return torch.rand(self.layout.numel, generator=self.gen, device=self.old.device)

    def neuron_scale(self) -> torch.Tensor:
        """SparseOpt's sqrt(d_i / d_mean) of each entry's neuron, under the current masks."""
        return self.layout.neuron_scale(self.old).float()


class DynamicSparsity:
    """Base class: owns the schedule, the step counter, the ITOP union and the update loop.

    Usage: ``dst = RigL(masks, optimizer, delta_t=100, alpha=0.3, t_end=0.75, total_steps=T)``, then
    ``dst.step()`` after every ``optimizer.step()``; it returns whether the topology changed. ``t_end`` is a
    fraction of ``total_steps``; ``t_end_steps=N`` gives the end of updates as a step count instead
    (``schedule.py``: an int ``t_end`` >= 2 is read as steps too, ``t_end=1`` is refused as ambiguous).
    Those keywords are the shortcut for ``schedule=UpdateSchedule(...)`` (another drop-fraction function, say);
    give one or the other.
    A method is a scorer: ``grow_scores(inputs)`` returns one flat score per connection (``UpdateInputs``);
    SRigL, whose grow rule is per neuron, replaces ``new_mask`` instead.

    What a method needs from whoever builds it, it declares here (``registry.py`` reads these; nothing else
    names a method): ``name`` (its registry key, the ``--method`` value), ``initial_fan_in`` (the mask
    ``sparsify`` should draw for it: ``"random"`` or ``"constant"``), ``needs_gradient`` (it grows from the raw
    dense gradient) and ``options`` (its own keyword arguments, e.g. RigL's ``grow_from``).
    """

    name = ""
    initial_fan_in = "random"
    needs_gradient = False
    options: tuple[str, ...] = ()

    def __init__(
        self,
        masks: SparseMasks,
        optimizer=None,
        *,
        schedule: UpdateSchedule | None = None,
        delta_t: int | None = None,  # None: 100
        alpha: float | None = None,  # None: 0.3
        t_end: float | int | None = None,  # None: 0.75
        total_steps: int | None = None,
        t_end_steps: int | None = None,
        seed: int = 0,
        assume_elementwise: bool = False,
    ):
        if not isinstance(masks, SparseMasks):
            raise TypeError(f"masks must be the SparseMasks returned by sparsify(), got {type(masks).__name__}")
        self.masks = masks
        self.optimizer = optimizer
        self.schedule = self._schedule(schedule, delta_t=delta_t, alpha=alpha, t_end=t_end, total_steps=total_steps,
                                       t_end_steps=t_end_steps)
        self.seed = seed
        self.t = 0
        self.defer_checks = False  # True: checks and records wait for flush() (no host sync inside update())
        self._updates: list[dict] = []  # one record per topology update (or skipped update)
        self._pending: list = []  # updates applied on the device, not yet checked (tuples), and records (dicts)
        self._pending_lock = threading.Lock()  # a notebook may read ``updates`` while a thread trains
        self._reset_union()
        self._grad_flat: torch.Tensor | None = None  # the gradient snapshot, flat in layout order
        self._grads_step = -1  # the step it is for
        self._hook = None
        if optimizer is not None:
            check_elementwise(optimizer, assume_elementwise)
            masks.register_optimizer(optimizer)
            if self.needs_gradient:
                self._hook = _snapshot_before_masking(self, optimizer)
        elif self.needs_gradient:
            raise ValueError(f"{type(self).__name__} grows from gradients: pass the optimizer")

    @staticmethod
    def _schedule(schedule, *, total_steps, **keywords) -> UpdateSchedule:
        """``schedule`` as given, or built from the keywords (the shortcut); not both."""
        given = [k for k, v in keywords.items() if v is not None]
        if schedule is None:
            defaults = {"delta_t": 100, "t_end": 0.75}
            return UpdateSchedule.build(total_steps=total_steps,
                                        **{k: defaults.get(k) if v is None else v for k, v in keywords.items()})
        if not isinstance(schedule, UpdateSchedule):
            raise TypeError(f"schedule must be an UpdateSchedule, got {type(schedule).__name__}")
        if given:
            raise ValueError(f"give the schedule as schedule=UpdateSchedule(...) or as the keywords "
                             f"({', '.join(given)}), not both")
        return schedule  # (total_steps, a fact about the run, only resolves a fractional t_end: nothing to do)

    def _reset_union(self) -> None:
        """Start the ITOP union (in flat layout order) at the current masks."""
        self._union = self.masks.layout().gather([m.weight_mask for m in self.masks.modules.values()]).clone()

    # ----- gradient snapshot (RigL) -------------------------------------------------------------------------
    # A DST that grows from gradients takes the snapshot itself on update steps (_snapshot_before_masking). A
    # trainer that runs the step in a CUDA graph records a take_gradient_snapshot() in the graph and hands the
    # graph's buffer over with use_gradient_snapshot() after each replay.
    @property
    def gradient_snapshot(self) -> torch.Tensor | None:
        """The raw dense gradient the next update grows from, flat in layout order; None when there is none."""
        return self._grad_flat

    @torch.no_grad()
    def take_gradient_snapshot(self, step: int | None = None) -> None:
        """Copy the raw dense gradient of every masked layer into one new flat buffer, for the update at ``step``
        (default: the next one, t + 1). Call it after backward, before anything masks the gradients."""
        grads = [m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight)
                 for m in self.masks.modules.values()]
        self.use_gradient_snapshot(self.masks.layout().gather(grads), self.t + 1 if step is None else step)

    def use_gradient_snapshot(self, flat: torch.Tensor, step: int) -> None:
        """Grow the update at ``step`` from ``flat`` (a gradient in layout order, e.g. a CUDA graph's static copy;
        kept, not copied)."""
        numel = self.masks.layout().numel
        if not torch.is_tensor(flat) or tuple(flat.shape) != (numel,):
            what = tuple(flat.shape) if torch.is_tensor(flat) else type(flat).__name__
            raise ValueError(f"a gradient snapshot is one flat tensor of the masks' layout ({numel} entries), got "
                             f"{what}: take it with take_gradient_snapshot() or masks.layout().gather(grads)")
        self._grad_flat, self._grads_step = flat, int(step)

    def clear_gradient_snapshot(self) -> None:
        """Forget the snapshot: done after every update, and by a CUDA graph after recording one that never ran."""
        self._grad_flat, self._grads_step = None, -1

    snapshot_gradients = take_gradient_snapshot  # the earlier names (benchmarks/epoch_time.py uses the first)
    set_gradient_snapshot = use_gradient_snapshot

    # ----- the schedule -------------------------------------------------------------------------------------
    def step(self) -> bool:
        """Advance one step; True when the topology changed (with ``defer_checks``: when an update was queued;
        its record, or "skipped" if its inputs were not finite, comes with the next :meth:`flush`)."""
        self.t += 1
        if not self.schedule.is_update(self.t):
            return False
        return self.update()

    @property
    def updates(self) -> list[dict]:
        """One record per topology update (or skipped update), in order; reading it flushes pending ones."""
        self.flush()
        return self._updates

    @updates.setter
    def updates(self, records: list[dict]) -> None:
        with self._pending_lock:
            self._pending = []
            self._updates = list(records)

    @torch.no_grad()
    def update(self) -> bool:
        """Drop and grow in every masked layer now (normally called by ``step()``)."""
        t = self.t
        fraction = self.schedule.drop_fraction(t)
        if self.needs_gradient and self._grads_step != t:
            self._record({"step": t, "drop_fraction": fraction, "skipped": "no gradient for this step"})
            return False
        names = list(self.masks.modules)
        live = [self.masks.live_count(n) for n in names]
        drop = [count_to_drop(fraction, n) for n in live]
        if not any(drop):  # late in the schedule floor(f * n) can be 0 everywhere: nothing to change
            self._record({"step": t, "drop_fraction": fraction, "changed": {}})
            return False
        inputs = UpdateInputs(self, t, fraction, drop)
        layout, old = inputs.layout, inputs.old
        checked = [inputs.weight_abs()] + ([inputs.gradient()] if self.gradient_snapshot is not None else [])
        finite = torch.stack([torch.isfinite(c).all() for c in checked]).all()
        leaked = (inputs.weight_abs() * ~old).amax()
        new = torch.where(finite, self.new_mask(inputs), old)  # non-finite inputs: the update keeps the old mask
        union = self._union.to(old.device) | new
        summary = torch.cat([
            layout.layer_sum(new).double(), layout.layer_sum(new & ~old).double(),
            torch.stack([finite.double(), leaked.double(), union.sum().double(),
                         layout.fan_in_cv(layout.row_sum(new)).double()]),
        ])
        self.masks.apply_flat(new, old, counts=dict(zip(names, live)))  # live counts are kept by every update
        self._union = union
        check_ranks_agree(self.masks, t)
        self.clear_gradient_snapshot()
        with self._pending_lock:
            self._pending.append((t, fraction, names, live, drop, summary))
        if self.defer_checks:
            return True
        self.flush()
        return "skipped" not in self._updates[-1]

    def flush(self) -> None:
        """Check and record every pending update: one host read for all of them (see the module docstring)."""
        with self._pending_lock:  # held throughout: records are appended in step order, by one thread at a time
            self._flush_locked()

    def _flush_locked(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        sums = [p[-1] for p in pending if isinstance(p, tuple)]
        values = torch.cat(sums).tolist() if sums else []  # the one host sync
        at = 0
        for p in pending:
            if isinstance(p, dict):  # a record that needed no check
                self._updates.append(p)
                continue
            t, fraction, names, live, drop, _ = p
            n = len(names)
            new_live, changed = values[at : at + n], values[at + n : at + 2 * n]
            finite, leaked, seen, fan_in_cv = values[at + 2 * n : at + 2 * n + 4]
            at += 2 * n + 4
            if not finite:
                self._updates.append({"step": t, "drop_fraction": fraction,
                                      "skipped": "non-finite gradient or weight"})
                continue
            if leaked != 0.0:
                raise RuntimeError(
                    f"pruned weights moved (max |w| outside the masks = {leaked:.3g}): the optimizer updated "
                    "inactive weights. Wrap it with SparseOpt(optimizer, masks) or call masks.attach(optimizer)."
                )
            for name, n_expected, n_live in zip(names, live, new_live):
                if int(n_live) != n_expected:
                    raise RuntimeError(
                        f"live count of {name!r} changed from {n_expected} to {int(n_live)}: drop/grow bug")
            self._updates.append({
                "step": t,
                "drop_fraction": fraction,
                "changed": {n: int(c) for n, c, k in zip(names, changed, drop) if k},
                "itop": seen / self.masks.numel(),
                "fan_in_cv": fan_in_cv,
            })

    def _record(self, record: dict) -> None:
        with self._pending_lock:
            self._pending.append(record)  # behind any pending update: records stay in step order
        if not self.defer_checks:
            self.flush()

    def _update_seed(self, t: int) -> int:
        # A generator seeded by (seed, step): identical choices on every rank and on resume.
        return (self.seed * 1_000_003 + t * 7_919) % (2**63 - 1)

    # ----- what subclasses change ---------------------------------------------------------------------------
    def drop_scores(self, inputs: UpdateInputs) -> torch.Tensor:
        """Keep-score of each live connection (|w|, ties broken by noise); -inf for inactive ones."""
        score = torch.where(inputs.old, inputs.weight_abs(), float("-inf"))
        return score.add_(inputs.noise(), alpha=TINY)

    def grow_scores(self, inputs: UpdateInputs) -> torch.Tensor:
        raise NotImplementedError

    def new_mask(self, inputs: UpdateInputs) -> torch.Tensor:
        """The generic core, all layers at once: keep the (live - k) strongest, grow k among the non-survivors."""
        layout = inputs.layout
        survivors = layout.top_per_layer(self.drop_scores(inputs), inputs.keep)
        grow = self.grow_scores(inputs).masked_fill_(survivors, float("-inf"))
        return survivors | layout.top_per_layer(grow, inputs.drop)

    # ----- diagnostics and persistence ----------------------------------------------------------------------
    def itop_rate(self) -> float:
        """In-time over-parameterisation: |union of all masks seen| / |parameters| (Liu et al. 2021)."""
        return float(self._union.sum()) / self.masks.numel()  # one host sync for all layers

    def state_dict(self) -> dict:
        union = self.masks.layout().split(self._union)
        return {
            "t": self.t, "seed": self.seed, "updates": list(self.updates),  # (flushes pending updates)
            "union": {n: u.clone() for n, u in zip(self.masks.modules, union)},
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if set(state.get("union", {})) != set(self.masks.modules):
            raise ValueError("DST state was saved for other layers: was the checkpoint made for another model?")
        modules = self.masks.modules
        for n, m in modules.items():  # checked before anything is loaded: the ITOP union is a mask too
            u = state["union"][n]
            if not torch.is_tensor(u) or u.dtype != torch.bool or tuple(u.shape) != tuple(m.weight.shape):
                what = f"{u.dtype} {tuple(u.shape)}" if torch.is_tensor(u) else type(u).__name__
                raise ValueError(
                    f"DST state: the ITOP union of {n!r} is {what}, expected a torch.bool tensor of the weight's "
                    f"shape {tuple(m.weight.shape)}: was the checkpoint made for another model, or damaged?")
        schedule = self.schedule.restored(state["schedule"])  # (may refuse: before anything is loaded)
        self.t = int(state["t"])
        self.seed = int(state["seed"])
        self.updates = list(state["updates"])
        union = [state["union"][n].to(m.weight.device) for n, m in modules.items()]
        self._union = self.masks.layout().gather(union).clone()
        self.schedule = schedule

    def remove(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def __repr__(self) -> str:
        s = self.schedule
        how = f"alpha={s.alpha}" if s.alpha is not None else f"fraction={s.fraction!r}"
        return f"{type(self).__name__}(delta_t={s.delta_t}, {how}, t_end={s.t_end}, step={self.t})"
