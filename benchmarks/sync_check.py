"""Where the engine waits for the GPU: every synchronising CUDA call of a short run, grouped by call site (GPU only).

A host sync drains the GPU's queue: the GPU then idles while Python launches the next work. The engine should
sync only at logging steps (``log_every``), at the end of an epoch (sums, evaluation) and at checkpoints; a
topology update on CUDA defers its checks (``DynamicSparsity.defer_checks``). This runs a RigL + SparseOpt
ResNet-20 under ``torch.cuda.set_sync_debug_mode("warn")`` with few logging steps and prints each site that
synced with its count; with ``--strict`` it fails when a site outside the allowed places syncs per update or
per step.

    python benchmarks/sync_check.py
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import traceback
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sparseopt_edu.train import TrainConfig, Trainer  # noqa: E402

#: functions inside which a sync is fine (once per epoch, per logging step, per checkpoint, or in the set-up and
#: warm-up before the graphs run); a site that synced once in the whole run is also fine (the run's start or end)
ALLOWED = {"_end_epoch", "evaluate", "_log_step", "_flush_topology", "flush", "_capture", "_capture_update",
           "_eager", "__init__", "save_checkpoint", "state_dict", "write_records"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="rigl")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=12_800, help="training images per epoch (100 steps at batch 128)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a site outside ALLOWED syncs")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("sync_check needs a CUDA device")
        return 0
    cfg = TrainConfig(model="resnet20", dataset="fake", n_train=args.n, n_test=1000, method=args.method,
                      sparsity=0.9, epochs=args.epochs, delta_t=25, batch_size=128, log_every=10_000,
                      progress=False, data_kwargs={"num_classes": 100})
    trainer = Trainer(cfg)
    sites: collections.Counter = collections.Counter()
    chains: dict = {}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def record(message, category, filename, lineno, file=None, line=None):
        ours = [f for f in traceback.extract_stack()[:-1] if f.filename.startswith(here)
                and "sync_check" not in f.filename]
        if not ours:
            return
        site = ours[-1]
        key = (os.path.relpath(site.filename, here), site.lineno, site.name)
        sites[key] += 1
        chains.setdefault(key, [f.name for f in reversed(ours)])

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores showwarning on exit
            warnings.simplefilter("always")
            warnings.showwarning = record
            history = trainer.run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    steps, updates = trainer.step, len(history.topology)
    print(f"{args.method}: {steps} steps, {updates} topology updates, {args.epochs} epochs; syncs by site:")
    bad = []
    for (path, line, name), count in sites.most_common():
        chain = chains[(path, line, name)]
        allowed = count == 1 or any(fn in ALLOWED for fn in chain)
        shown = " <- ".join(chain[:6])
        print(f"  {count:5d}  {path}:{line} {name}   [{shown}]{'' if allowed else '   <- NOT ALLOWED'}")
        if not allowed:
            bad.append((path, line, name))
    print(f"total {sum(sites.values())} syncs ({sum(sites.values()) / max(1, steps):.3f} per step)")
    return 1 if (args.strict and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
