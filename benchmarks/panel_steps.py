"""Training steps per second of the notebook panels on a CPU (issue 17 item 6: the learners' laptops, no regression).

Trains the configurations the panels build (``RaceState.default().configs()``: notebook 04's baseline and SparseOpt
arms, MLP on digits; ``DSTState.default().config()``: notebook 03's RigL run, MLP on the MNIST subset), each for
``--steps`` steps on the CPU, interleaved over ``--rounds`` rounds. Reported per panel: steps/s over the whole
``run()`` (what a learner waits for: steps, events, evaluation) and over the training epochs alone
(``History.time_s``), median with min and max over the rounds. The JSON names the commit, the threads and the
load average, so a later run on the same machine says "before / after".

    python benchmarks/panel_steps.py                  # 3 rounds x 100 steps of each panel (~1 min on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sparseopt_edu.train import TrainConfig, Trainer  # noqa: E402


def panel_configs() -> dict[str, dict]:
    from sparseopt_edu.widgets.dst import DSTState
    from sparseopt_edu.widgets.race import RaceState

    race = RaceState.default().configs()
    return {"race baseline (04)": race[0], "race SparseOpt (04)": race[1], "DST RigL (03)": DSTState.default().config()}


def one_run(cfg: dict, steps: int) -> tuple[float, float]:
    fields = {k: v for k, v in cfg.items() if k in TrainConfig.__dataclass_fields__}
    trainer = Trainer(TrainConfig(**{**fields, "device": "cpu", "steps": steps, "progress": False}))
    t0 = time.perf_counter()
    history = trainer.run()
    wall = time.perf_counter() - t0
    return steps / wall, steps / max(sum(history.time_s), 1e-9)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    configs = panel_configs()
    rows = {name: {"wall": [], "train": []} for name in configs}
    for r in range(args.rounds):
        for name, cfg in configs.items():
            wall, train = one_run(cfg, args.steps)
            rows[name]["wall"].append(wall)
            rows[name]["train"].append(train)
            print(f"round {r + 1}: {name:22s} {wall:7.1f} steps/s (run)  {train:7.1f} steps/s (training)", flush=True)
    summary = {name: {kind: {"median": statistics.median(v), "min": min(v), "max": max(v)} for kind, v in r.items()}
               for name, r in rows.items()}
    print(f"\n{'panel':22s} {'run steps/s (min-max)':>26s} {'training steps/s (min-max)':>30s}")
    for name, s in summary.items():
        w, t = s["wall"], s["train"]
        print(f"{name:22s} {w['median']:9.1f} ({w['min']:6.1f}-{w['max']:6.1f}) "
              f"{t['median']:13.1f} ({t['min']:6.1f}-{t['max']:6.1f})")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        commit = None
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"panel_steps-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"device": f"CPU {platform.machine()} ({os.cpu_count()} cores)", "threads": torch.get_num_threads(),
                   "load_average": os.getloadavg(), "torch": torch.__version__, "commit": commit,
                   "command": " ".join(sys.argv), "steps": args.steps, "rounds": args.rounds,
                   "configs": configs, "rounds_steps_per_s": rows, "summary": summary}, fh, indent=1, default=str)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
