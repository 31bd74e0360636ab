"""Epoch time of the engine (CUDA graph, GPU-resident data and augmentation) vs a standard PyTorch loop.

ResNet-20, CIFAR-100-shaped data (50,000 train images per epoch, 100 classes), batch 128.
- engine, RigL + SparseOpt at 90% (ERK), CUDA graphs on (``cuda_graphs="auto"``), bf16, channels_last;
- engine, dense, same switches (the overhead of RigL + SparseOpt);
- standard loop: torch DataLoader (8 workers, pinned memory, torchvision transforms), fp32, eager, plain SGD,
  dense (ENV.md measured 3.07 s/epoch on an H100).
Epoch times exclude evaluation; the engine's first epoch (warm-up, capture, compile) is reported separately and
the steady state is the median of the later epochs. Prints a table and writes JSON under benchmarks/results/.

    python benchmarks/epoch_time.py                 # GPU: 4 engine epochs, 2 baseline epochs
    python benchmarks/epoch_time.py --smoke         # any machine, tiny sizes (checks that it runs)
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sparseopt_edu import data as data_mod
from sparseopt_edu.models import resnet20
from sparseopt_edu.train import TrainConfig, Trainer


def engine_epochs(args, method: str, sparseopt: bool, cuda_graphs) -> dict:
    cfg = TrainConfig(model="resnet20", dataset=args.data, method=method, sparseopt=sparseopt, sparsity=0.9,
                      batch_size=args.batch_size, epochs=args.epochs, n_train=args.n, n_test=args.n_test,
                      data_kwargs={"num_classes": 100} if args.data == "shapes" else {},
                      eval_every_epochs=args.epochs, progress=False, device=args.device, cuda_graphs=cuda_graphs,
                      compile=args.compile, log_every=10_000, skew_every=args.skew_every)
    trainer = Trainer(cfg)
    h = trainer.run()
    times = h.time_s
    steady = times[1:] or times
    row = {"name": f"engine {method}{' + SparseOpt' if sparseopt else ''}", "epoch_times_s": times,
           "first_epoch_s": times[0], "steady_epoch_s": statistics.median(steady),
           "images_per_s": trainer.steps_per_epoch * args.batch_size / statistics.median(steady),
           "features": trainer.features, "final_train_loss": h.train_loss[-1], "test_acc": h.final("test_acc"),
           "topology_updates": len(h.topology)}
    if trainer._graph is not None and trainer._graph.graph is not None:
        row["graph_replay_only_epoch_s"] = replay_only(trainer)
    if trainer.dst is not None:
        row["update_ms"] = update_ms(trainer)
    return row


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def replay_only(trainer) -> float:
    """One epoch of bare replays of the step graph: the GPU's own time per epoch, no loop, loader or updates."""
    graph = trainer._graph.graph
    _sync(trainer.device)
    t0 = time.perf_counter()
    for _ in range(trainer.steps_per_epoch):
        graph.replay()
    _sync(trainer.device)
    return time.perf_counter() - t0


def update_ms(trainer, n: int = 20) -> float:
    """Median wall time of one topology update (drop, grow, checks, apply; synchronised on both sides)."""
    from sparseopt_edu.dst.schedule import UpdateSchedule

    dst = trainer.dst
    dst.schedule = UpdateSchedule(delta_t=1, alpha=0.3, t_end=10**9)  # every step is an update step, f ~ 0.15
    times = []
    for _ in range(n):
        if dst.needs_gradient:
            dst.snapshot_gradients(dst.t + 1)
        dst.t += 1
        _sync(trainer.device)
        t0 = time.perf_counter()
        dst.update()
        _sync(trainer.device)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def standard_loop(args, data) -> dict:
    """The usual recipe: DataLoader workers, fp32, eager, plain SGD, dense."""
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model = resnet20(num_classes=data.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loader = data_mod.torch_dataloader(data, "train", batch_size=args.batch_size, workers=args.workers)
    times = []
    for _ in range(args.baseline_epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    steady = times[1:] or times
    return {"name": f"standard loop (DataLoader x{args.workers} workers, fp32, eager, SGD, dense)",
            "epoch_times_s": times, "first_epoch_s": times[0], "steady_epoch_s": statistics.median(steady),
            "images_per_s": len(loader) * args.batch_size / statistics.median(steady)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4, help="engine epochs per configuration (default 4)")
    p.add_argument("--baseline-epochs", type=int, default=2, help="standard-loop epochs (default 2)")
    p.add_argument("--data", choices=("fake", "shapes"), default="fake")
    p.add_argument("--n", type=int, default=50_000, help="training images per epoch (default 50,000)")
    p.add_argument("--n-test", type=int, default=1_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model inside the CUDA graph")
    p.add_argument("--skew-every", choices=("update", "never"), default="update",
                   help="skew metrics at topology updates (default) or never")
    p.add_argument("--no-graphs", action="store_true", help="engine without CUDA graphs (eager bf16)")
    p.add_argument("--configs", default="rigl,dense",
                   help="engine configurations to time: rigl (RigL + SparseOpt) and/or dense (default both)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (CPU is fine)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    if args.smoke:
        args.n, args.n_test, args.epochs, args.baseline_epochs, args.workers = 512, 128, 2, 1, 0
        args.batch_size = min(args.batch_size, 64)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    card = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    graphs = False if args.no_graphs else "auto"
    print(f"device: {card}; torch {torch.__version__}; data {args.data} x {args.n}; batch {args.batch_size}",
          flush=True)

    data = (data_mod.fake(args.n, num_classes=100, n_test=args.n_test) if args.data == "fake"
            else data_mod.shapes(args.n, args.n_test, num_classes=100))
    wanted = args.configs.split(",")
    if not wanted or not set(wanted) <= {"rigl", "dense"}:
        p.error(f"--configs takes rigl and/or dense, got {args.configs!r}")
    engine = {name: engine_epochs(args, name, name == "rigl", graphs) for name in wanted}
    # Free the finished trainers' CUDA graphs here, before the DataLoader forks its workers: a worker that
    # collected them would call cudaGraphExecDestroy in a forked child and print "CUDAGraph.cpp ... CUDA warning:
    # initialization error" once per graph (issue 17; benchmarks/fork_warning.py shows it).
    gc.collect()
    base = standard_loop(args, data)
    rows = list(engine.values()) + [base]
    first = engine[wanted[0]]
    summary = {
        "speedup_vs_standard": base["steady_epoch_s"] / first["steady_epoch_s"],
        "projected_100_epochs_s": first["first_epoch_s"] + 99 * first["steady_epoch_s"],
    }
    if len(engine) == 2:
        summary["rigl_sparseopt_overhead_vs_dense"] = (engine["rigl"]["steady_epoch_s"]
                                                       / engine["dense"]["steady_epoch_s"] - 1.0)
    print(f"\n{'configuration':72s} {'first (s)':>9s} {'steady (s/epoch)':>16s} {'images/s':>10s}")
    for r in rows:
        print(f"{r['name']:72s} {r['first_epoch_s']:9.2f} {r['steady_epoch_s']:16.3f} {r['images_per_s']:10.0f}")
    for r in rows[:-1]:
        extra = [f"{k} {r[k]:.3f}" for k in ("graph_replay_only_epoch_s", "update_ms") if k in r]
        if extra:
            print(f"{r['name']}: {', '.join(extra)}, {r['topology_updates']} topology updates")
    print(f"\nspeed-up of the engine ({first['name']}) over the standard loop: {summary['speedup_vs_standard']:.2f}x")
    if "rigl_sparseopt_overhead_vs_dense" in summary:
        print(f"overhead of RigL + SparseOpt over dense, same engine: "
              f"{100 * summary['rigl_sparseopt_overhead_vs_dense']:+.1f}%")
    print(f"projected 100 epochs ({first['name']}): {summary['projected_100_epochs_s']:.0f} s")
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = "smoke" if args.smoke else card.replace(" ", "_").replace("/", "_")
    path = os.path.join(args.out, f"epoch_time-{tag}-{stamp}.json")
    with open(path, "w") as fh:
        json.dump({"card": card, "torch": torch.__version__, "command": " ".join(sys.argv), "args": vars(args),
                   "rows": rows, "summary": summary}, fh, indent=1, default=str)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
