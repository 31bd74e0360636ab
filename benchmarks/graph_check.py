"""CUDA-graph engine against the eager engine on the same runs (GPU only): same topology updates, invariants
kept, losses close, skew metrics present, and epoch times. A check to run after touching train/graphs.py.

    python benchmarks/graph_check.py
"""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sparseopt_edu.train import TrainConfig, Trainer  # noqa: E402

BASE = dict(model="resnet20", dataset="shapes", n_train=6400, n_test=1000, data_kwargs={"num_classes": 10},
            sparsity=0.9, epochs=3, delta_t=10, batch_size=128, log_every=10, progress=False)


def run(**kw):
    trainer = Trainer(TrainConfig(**{**BASE, **kw}))
    history = trainer.run()
    return trainer, history


def main() -> int:
    if not torch.cuda.is_available():
        print("graph_check needs a CUDA device")
        return 0
    failures = 0
    for label, kw in [("rigl", {}), ("set", {"method": "set"}), ("srigl", {"method": "srigl"}),
                      ("rigl-adam", {"optimizer": "adam", "lr": 1e-3}), ("rigl-baseline", {"sparseopt": False}),
                      ("dense-clip", {"method": "dense", "max_grad_norm": 1.0})]:
        (tg, hg), (_, he) = run(**kw), run(cuda_graphs=False, **kw)
        dense = tg.masks is None  # nothing to keep at zero; the step clips its gradients inside the graph
        zero = {"weight": 0.0, "optimizer_state": 0.0}
        inactive = zero if dense else tg.masks.inactive_max()
        same_updates = len(hg.topology) == len(he.topology)
        skew_ok = dense or all(r["rotation_deg"] is not None for r in hg.topology)
        close = abs(hg.train_loss[-1] - he.train_loss[-1]) <= 0.05 * abs(he.train_loss[-1]) + 0.02
        ok = inactive == zero and same_updates and skew_ok and close
        failures += not ok
        print(f"{label:14s} graph loss {hg.train_loss[-1]:.4f} eager {he.train_loss[-1]:.4f} | updates "
              f"{len(hg.topology)}/{len(he.topology)} | skew present {skew_ok} | inactive {inactive} | epoch s "
              f"graph {hg.time_s[-1]:.2f} eager {he.time_s[-1]:.2f} | {'OK' if ok else 'FAIL'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
