"""Compile once per machine (issue 17 item 4): the compiled Trainer's first epoch in a new process, cold vs warm.

Each run is a fresh process (``--child``) that points the compile cache at ``--cache-dir``
(``train/compile_cache.enable_persistent_cache``), builds ``Trainer(TrainConfig(model="resnet20", dataset="fake",
method="rigl", compile=True, ...))`` (50,000 images, batch 128, RigL + SparseOpt 90%) and trains one epoch plus
``--extra-epochs``. The first run on an empty folder is cold (Inductor generates and autotunes every kernel); the
next ones find the folder filled (warm). Reported per run: the process's time to import, build and finish the
first epoch, the first epoch alone, a steady epoch, Inductor's cache hits and misses, and how many
``CUDAGraph.cpp`` warnings the process printed. Target: a warm first epoch <= 25 s.

    python benchmarks/compile_warm.py                       # CUDA: cold + warm run in a fresh temporary folder
    python benchmarks/compile_warm.py --cache-dir D --runs 1   # one more run on the folder D
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

T_START = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def child(args) -> dict:
    import torch

    from sparseopt_edu.train import TrainConfig, Trainer
    from sparseopt_edu.train.compile_cache import cache_counters, enable_persistent_cache

    folder = enable_persistent_cache(args.cache_dir)
    t_import = time.perf_counter() - T_START
    cfg = TrainConfig(model="resnet20", dataset="fake", n_train=args.n, n_test=1000, method="rigl", sparseopt=True,
                      sparsity=0.9, batch_size=128, epochs=1 + args.extra_epochs, delta_t=100, compile=True,
                      eval_every_epochs=1 + args.extra_epochs, progress=False, device="cuda")
    trainer = Trainer(cfg)
    t_built = time.perf_counter() - T_START
    steps = trainer.iterate()
    times = []
    for _ in range(1 + args.extra_epochs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(trainer.steps_per_epoch):
            next(steps)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if len(times) == 1:
            t_first = time.perf_counter() - T_START
    steps.close()
    return {"cache_dir": folder, "import_s": t_import, "build_s": t_built - t_import, "first_epoch_s": times[0],
            "process_to_first_epoch_end_s": t_first, "later_epochs_s": times[1:], "counters": cache_counters(),
            "features": trainer.features, "card": torch.cuda.get_device_name(), "torch": torch.__version__}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", default=None, help="compile cache folder (default: a fresh temporary one)")
    p.add_argument("--runs", type=int, default=2, help="new processes, one after the other (default 2)")
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--extra-epochs", type=int, default=1, help="epochs after the first (default 1)")
    p.add_argument("--timeout", type=float, default=400, help="seconds per run before it is stopped")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.child:
        with open(args.json, "w") as fh:
            json.dump(child(args), fh, indent=1, default=str)
        return 0
    folder = args.cache_dir or tempfile.mkdtemp(prefix="inductor-cold-")
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="compile-warm-")  # the runs' own files; the summary goes to --out
    runs = []
    for i in range(args.runs):
        out = os.path.join(work, f"run{i + 1}.json")
        log = os.path.join(work, f"run{i + 1}.stderr.txt")
        empty = not any(os.scandir(folder)) if os.path.isdir(folder) else True
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--cache-dir", folder, "--json", out,
               "--n", str(args.n), "--extra-epochs", str(args.extra_epochs)]
        t0 = time.perf_counter()
        with open(log, "w") as err:
            try:
                rc = subprocess.run(cmd, stderr=err, timeout=args.timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        wall = time.perf_counter() - t0
        with open(log) as fh:
            text = fh.read()
        row = {"run": i + 1, "cache": "cold (empty folder)" if empty else "warm", "rc": rc, "wall_s": wall,
               "cudagraph_warnings": text.count("CUDAGraph.cpp"), "stderr_tail": text[-1500:],
               "cudagraph_warning_lines": [ln for ln in text.splitlines() if "CUDAGraph.cpp" in ln][:20]}
        if rc == 0:
            with open(out) as fh:
                row.update(json.load(fh))
        runs.append(row)
        first = row.get("first_epoch_s")
        print(f"run {i + 1} ({row['cache']}): rc {rc}, process {wall:.1f} s, first epoch "
              f"{first if first is None else round(first, 1)} s, later {row.get('later_epochs_s')}, "
              f"{row['cudagraph_warnings']} CUDAGraph warnings, counters {row.get('counters')}", flush=True)
    card = next((r["card"] for r in runs if "card" in r), "unknown")
    path = os.path.join(args.out, f"compile_warm-{card.replace(' ', '_')}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"card": card, "command": " ".join(sys.argv), "cache_dir": folder, "runs": runs}, fh, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
