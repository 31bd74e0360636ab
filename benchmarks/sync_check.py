"""Where the engine waits for the GPU: every synchronising CUDA call of a short run, counted per call site.

A host sync drains the GPU's queue: the GPU then idles while Python launches the next work. The engine should
sync only at logging steps (``log_every``), at the end of an epoch (sums, evaluation), at checkpoints and in the
run's set-up; a training step and a topology update never sync (on CUDA a topology update defers its checks to
the next flush, ``DynamicSparsity.defer_checks``). This runs a RigL + SparseOpt ResNet-20 under
``torch.cuda.set_sync_debug_mode("warn")`` with few logging steps, records the call chain of each sync, and prints
each site with its count per step and per topology update.

How a sync is judged (``judge``): walk its call chain from the sync outwards; the first function that is either
on the per-step path (``PER_STEP``: the step, the update, the step's eager warm-up) or a justified place
(``JUSTIFIED``: each with its reason and its budget, so many syncs per epoch / logging step / run) decides.

- on the per-step path: never allowed (a flush reached from ``_train_step`` is a per-update sync: it is *not*
  excused by being a flush; only a flush reached from an epoch end or a logging step is);
- a justified place: allowed up to its budget: a site inside ``_end_epoch`` that syncs more often than the run
  has epochs syncs per step or per update, whatever its name, and fails;
- neither: not allowed (a site nobody justified).

``--strict`` exits 1 when any site is not allowed. ``--no-defer`` is the negative control: it turns off the
DST's deferred checks, so every update reads its checks at once, and ``--strict`` must then fail.

    python benchmarks/sync_check.py [--strict] [--no-defer] [--cuda-graphs auto|on|off]
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import traceback
import warnings
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

#: Functions of the per-step path. A sync whose nearest decisive frame is one of these happens per step or per
#: topology update; nothing excuses it ("step" covers Trainer steps, GraphStep.step and DynamicSparsity.step).
PER_STEP = frozenset({
    "_train_step", "train_step", "loss_fn", "add", "step", "__call__", "_eager", "_recorded", "write_lr", "base_lr",
    "commit", "update", "skew_table", "_gradient_copy", "snapshot_gradients", "set_gradient_snapshot",
    "use_gradient_snapshot", "take_gradient_snapshot", "replay",
})

#: The places allowed to sync: function name -> (unit, syncs per unit per site, why). Units are counted from the
#: run (``units``): "run" = 1, "epoch" = epochs run, "log" = logging steps, "capture" = CUDA graphs captured.
JUSTIFIED = {
    "__init__": ("run", 4, "set-up: building the model, the masks and the loaders"),
    "_capture": ("capture", 2, "CUDA graph capture, once per graph (the step's and the update step's)"),
    "_end_epoch": ("epoch", 2, "epoch end: the epoch's loss/accuracy sums and pending topology checks"),
    "evaluate": ("epoch", 2, "epoch end: test accuracy"),
    "_log_step": ("log", 2, "logging step: the window's loss and pending topology checks"),
    "state_dict": ("run", 2, "checkpoint / end of run: the history must be complete"),
    "save_checkpoint": ("run", 2, "checkpoint"),
    "write_records": ("run", 2, "end of run: the records on disk"),
    "iterate": ("run", 2, "start and end of the run (the final flush of topology checks)"),
}


@dataclass
class Verdict:
    site: tuple  # (path, line, function)
    count: int
    chain: list  # function names, innermost (the syncing frame) first
    allowed: bool
    why: str


def units(*, epochs: int, log_steps: int, captures: int) -> dict:
    return {"run": 1, "epoch": max(epochs, 1), "log": log_steps, "capture": captures}


def judge(site: tuple, count: int, chain: list, run_units: dict) -> Verdict:
    """Decide one site (see the module docstring): the nearest per-step or justified frame of ``chain`` decides."""
    for fn in chain:
        if fn in PER_STEP:
            return Verdict(site, count, chain, False, f"on the per-step path ({fn})")
        if fn in JUSTIFIED:
            unit, per_unit, reason = JUSTIFIED[fn]
            budget = per_unit * run_units.get(unit, 0)
            if count > budget:
                return Verdict(site, count, chain, False,
                               f"{fn}: {count} syncs, over its budget of {per_unit} per {unit} ({budget} here): "
                               "it syncs per step or per update")
            return Verdict(site, count, chain, True, f"{fn}: {reason}")
    return Verdict(site, count, chain, False, "no justified caller (add it to JUSTIFIED with a reason, or remove "
                                              "the sync)")


def judge_all(sites: dict, chains: dict, run_units: dict) -> list[Verdict]:
    """Every site, most syncs first."""
    order = sorted(sites, key=lambda k: (-sites[k], k))
    return [judge(k, sites[k], chains[k], run_units) for k in order]


def report(verdicts: list[Verdict], *, steps: int, updates: int) -> list[str]:
    lines = []
    for v in verdicts:
        path, line, name = v.site
        mark = "ok " if v.allowed else "BAD"
        lines.append(f"  {mark} {v.count:5d} ({v.count / max(1, steps):.3f}/step, {v.count / max(1, updates):.2f}"
                     f"/update)  {path}:{line} {name}   [{' <- '.join(v.chain[:6])}]  {v.why}")
    total = sum(v.count for v in verdicts)
    in_step = sum(v.count for v in verdicts if not v.allowed)
    lines.append(f"total {total} syncs ({total / max(1, steps):.3f} per step); not allowed: {in_step} "
                 f"({in_step / max(1, updates):.2f} per update) at "
                 f"{sum(not v.allowed for v in verdicts)} site(s)")
    return lines


class Recorder:
    """``warnings.showwarning`` replacement: each CUDA sync warning -> (site, chain) of this repository's frames."""

    def __init__(self, root: str):
        self.root = root
        self.sites: collections.Counter = collections.Counter()
        self.chains: dict = {}

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        self.add(traceback.extract_stack()[:-1])

    def add(self, stack) -> None:
        ours = [f for f in stack if f.filename.startswith(self.root) and "sync_check" not in f.filename]
        if not ours:
            return
        site = ours[-1]
        key = (os.path.relpath(site.filename, self.root), site.lineno, site.name)
        self.sites[key] += 1
        self.chains.setdefault(key, [f.name for f in reversed(ours)])


def main(argv=None) -> int:
    import torch

    from sparseopt_edu.train import TrainConfig, Trainer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="rigl")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=12_800, help="training images per epoch (100 steps at batch 128)")
    p.add_argument("--cuda-graphs", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--strict", action="store_true", help="exit 1 if any sync is not allowed")
    p.add_argument("--no-defer", action="store_true",
                   help="negative control: every topology update reads its checks at once (--strict must fail)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("sync_check needs a CUDA device")
        return 0
    graphs = {"auto": "auto", "on": True, "off": False}[args.cuda_graphs]
    log_every = 10_000
    cfg = TrainConfig(model="resnet20", dataset="fake", n_train=args.n, n_test=1000, method=args.method,
                      sparsity=0.9, epochs=args.epochs, delta_t=25, batch_size=128, log_every=log_every,
                      cuda_graphs=graphs, progress=False, data_kwargs={"num_classes": 100})
    trainer = Trainer(cfg)
    if args.no_defer and trainer.dst is not None:
        trainer.dst.defer_checks = False
    rec = Recorder(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores showwarning on exit
            warnings.simplefilter("always")
            warnings.showwarning = rec
            history = trainer.run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    steps, updates = trainer.step, len(history.topology)
    graph = getattr(trainer, "_graph", None)
    captures = 0 if graph is None else (graph.graph is not None) + (graph.update_graph is not None)
    run_units = units(epochs=len(history.epoch),
                      log_steps=steps // log_every, captures=captures)
    verdicts = judge_all(rec.sites, rec.chains, run_units)
    print(f"{args.method}: {steps} steps, {updates} topology updates, {args.epochs} epochs, {captures} graph(s)"
          f"{', checks NOT deferred (negative control)' if args.no_defer else ''}; syncs by site:")
    print("\n".join(report(verdicts, steps=steps, updates=updates)))
    return 1 if (args.strict and not all(v.allowed for v in verdicts)) else 0


if __name__ == "__main__":
    sys.exit(main())
