"""How fast the Table 2 grid runs on one GPU: 18 runs (RigL and RigL + SparseOpt at 90/95/97% x 3 seeds).

Runs the real grid (``reproduce table2``'s recipe, ResNet-20, batch 128, 50,000 CIFAR-100-shaped images per epoch
from ``shapes``) twice, E1 and E2 epochs per run, with ``--parallel`` 1, 2, 4, ... (runs interleaved, one CUDA stream each), and
projects the 100-epoch grid from the difference: wall(100) = wall(E1) + (100 - E1) x (wall(E2) - wall(E1)) /
(E2 - E1). Warm-up (capture, cuDNN autotuning, data) is in wall(E1) once per run, as in a real grid. Prints a
table; writes JSON under benchmarks/results/. One
warm-up run first (data generation, CUDA start, cuDNN autotuning), which a real grid pays once per process.

    python benchmarks/grid_throughput.py                    # GPU: parallel 1,2,4,6,9 x (1 and 3 epochs)
    python benchmarks/grid_throughput.py --compile          # every run compiled (the first run compiles)
    python benchmarks/grid_throughput.py --smoke            # any machine, tiny sizes
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sparseopt_edu.paper import table2_config
from sparseopt_edu.train import Trainer, grid


def base_config(epochs: int, args):
    ns = argparse.Namespace(dataset="shapes", batch_size=args.batch_size, epochs=epochs, delta_t=100,
                            n_train=args.n, n_test=args.n_test, device=args.device, data_root="data",
                            compile=args.compile)
    return table2_config(ns)  # exactly what reproduce runs: evaluates every epoch, logs every 100 steps


def grid_wall(parallel: int, epochs: int, args) -> tuple[float, list[dict]]:
    jobs = grid.plan(base_config(epochs, args), ["rigl", "rigl+sparseopt"], args.sparsities, range(args.seeds))
    t0 = time.perf_counter()
    rows = grid.run(jobs, parallel=parallel)
    return time.perf_counter() - t0, rows


def measure(parallel: int, args) -> dict:
    """Two grids, of E1 and E2 epochs per run: the difference is the cost of (E2 - E1) steady epochs of every run."""
    short, _ = grid_wall(parallel, args.epochs[0], args)
    long, rows = grid_wall(parallel, args.epochs[1], args)
    per_epoch = (long - short) / (args.epochs[1] - args.epochs[0])  # one more epoch of all 18 runs
    return {"parallel": parallel, "compile": args.compile, "runs": len(rows), "epochs": args.epochs,
            "wall_s": [short, long], "dynamo": dynamo_stats(),
            "grid_epoch_s": per_epoch, "projected_100_epoch_grid_s": short + (100 - args.epochs[0]) * per_epoch,
            "mean_test_acc": sum(r["final_test_acc"] or 0 for r in rows) / len(rows),
            "reasons": sorted({r["reason"] for r in rows})}


def dynamo_stats() -> dict:
    """torch.compile's graphs traced so far in this process: with ``--compile``, constant after the first run when
    later runs reuse its code (a recompile per run would show here, and past dynamo's limit run eagerly)."""
    from torch._dynamo.utils import counters

    return {key: int(value) for key, value in counters["stats"].items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parallel", default="1,2,4,6,9", help="comma-separated values (default 1,2,4,6,9)")
    p.add_argument("--epochs", default="1,3", help="the two grid lengths E1,E2 in epochs per run (default 1,3)")
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--n-test", type=int, default=10_000, help="test images, evaluated every epoch (CIFAR-100: 10,000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="every run with compile=True (reproduce --compile)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (CPU is fine)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    args.sparsities = [0.9, 0.95, 0.97]
    if args.smoke:
        args.n, args.n_test, args.seeds, args.batch_size, args.parallel = 256, 64, 1, 64, "1,2"
    args.epochs = [int(v) for v in args.epochs.split(",")]
    if len(args.epochs) != 2 or not 1 <= args.epochs[0] < args.epochs[1]:
        p.error(f"--epochs needs two lengths E1 < E2, got {args.epochs}")
    card = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    print(f"device: {card}; torch {torch.__version__}", flush=True)
    # once per process, as in a real grid: generate the data, start CUDA, let cuDNN time its algorithms
    Trainer(base_config(1, args)).run()
    results = []
    for n in [int(v) for v in args.parallel.split(",")]:
        r = measure(n, args)
        results.append(r)
        print(f"parallel {n:2d}: {r['runs']} runs x {args.epochs} epochs in {r['wall_s'][0]:6.1f} / {r['wall_s'][1]:6.1f} s;"
              f" one more epoch of every run {r['grid_epoch_s']:.2f} s -> 100-epoch grid ~ "
              f"{r['projected_100_epoch_grid_s'] / 60:.1f} min (mean acc {r['mean_test_acc']:.3f}, {r['reasons']}; "
              f"dynamo {r['dynamo']})",
              flush=True)
    os.makedirs(args.out, exist_ok=True)
    tag = "smoke" if args.smoke else card.replace(" ", "_").replace("/", "_") + ("-compiled" if args.compile else "")
    path = os.path.join(args.out, f"grid_throughput-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"card": card, "torch": torch.__version__, "command": " ".join(sys.argv), "results": results}, fh,
                  indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
