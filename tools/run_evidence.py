"""Make notebook 05's evidence: run one group of ``sparseopt_edu.evidence.GROUPS`` and write its results JSON.

The JSON is rewritten (atomically) after every finished run, so a call cut short keeps what finished. Rows are
``grid.result_row`` without the History (settings, final/best accuracy, final ITOP, per-epoch curves, card);
``meta`` holds the group, card, torch version, wall time and this command. Commit the files under
``results/fashion_mnist/``; nothing else is committed (no checkpoints).

    python tools/run_evidence.py --group rigl-90-95 --out results/fashion_mnist      # on a GPU (about 7 min, H200)
    python tools/run_evidence.py --group rigl-90-95 --smoke --out /tmp/ev             # any machine: tiny sizes
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from sparseopt_edu import evidence  # noqa: E402
from sparseopt_edu.train import grid  # noqa: E402
from sparseopt_edu.train.runs import atomic_write_text  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", required=True, help=f"comma-separated, from {', '.join(evidence.GROUPS)}: all their "
                                                  "runs share one interleaved queue, one JSON per group")
    p.add_argument("--out", default=evidence.RESULTS_DIR, help="folder for <group>.json")
    p.add_argument("--parallel", type=int, default=10, help="runs interleaved on the GPU (default 10)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--smoke", action="store_true", help="2 epochs on 512 images, 1 seed: checks the pipeline")
    args = p.parse_args(argv)
    groups = [g for g in args.group.split(",") if g]
    bad = [g for g in groups if g not in evidence.GROUPS]
    if bad or not groups:
        p.error(f"--group: unknown {bad or 'none'}; choose from {', '.join(evidence.GROUPS)}")

    os.makedirs(args.out, exist_ok=True)
    cuda = torch.cuda.is_available()
    command = "python tools/run_evidence.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()
    all_jobs, state = [], {}
    for group in groups:  # longest groups first: they start first and the queue drains evenly
        epochs = 2 if args.smoke else evidence.GROUP_EPOCHS.get(group, evidence.EPOCHS)
        sizes = {"n_train": 512, "n_test": 256} if args.smoke else {}
        base = evidence.base_config(epochs, data_root=args.data_root, **sizes)
        jobs = evidence.jobs(group, base, seeds=1 if args.smoke else None)
        path = os.path.join(args.out, f"{group}{'-smoke' if args.smoke else ''}.json")
        meta = {"group": group, "epochs": epochs, "runs_planned": len(jobs),
                "device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
                "parallel": args.parallel, "command": command}
        state[group] = {"path": path, "meta": meta, "config": base.to_dict(), "done": []}
        all_jobs += [(epochs, group, job) for job in jobs]
    all_jobs.sort(key=lambda e: -e[0])
    owner = {id(job): group for _, group, job in all_jobs}
    jobs = [job for *_, job in all_jobs]

    def write(group):
        st = state[group]
        st["meta"].update(wall_s=round(time.perf_counter() - t0, 1), runs_done=len(st["done"]))
        doc = {"meta": st["meta"], "config": st["config"], "rows": grid.json_rows(st["done"]),
               "comparisons": grid.paired_comparisons(st["done"])}
        atomic_write_text(st["path"], json.dumps(grid.finite(doc), indent=1, allow_nan=False) + "\n")

    def on_result(job, row):
        group = owner[id(job)]
        state[group]["done"].append(row)
        write(group)
        print(f"[{time.perf_counter() - t0:6.0f}s] {group:10s} {job.name:48s} final {row['test_acc']:.4f} best "
              f"{row['best_test_acc']:.4f} itop {row['itop'] or 0:.3f} ({row['reason']})", flush=True)

    print(f"{len(jobs)} runs, parallel {args.parallel} on {'GPU' if cuda else 'cpu'}", flush=True)
    grid.run(jobs, parallel=args.parallel if cuda else 1, on_result=on_result)
    for group in groups:
        write(group)
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
