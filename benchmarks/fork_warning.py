"""Where ``CUDAGraph.cpp: Warning: CUDA warning: initialization error`` comes from (issue 17 item 4).

Hypothesis: a process forked after CUDA started (a ``DataLoader`` worker: Linux forks by default) inherits the
parent's Python objects; when the child's garbage collector frees a CUDA graph that the parent no longer
referenced but had not collected yet (a finished Trainer sits in a reference cycle: trainer <-> its GraphStep),
``CUDAGraph::reset`` calls ``cudaGraphExecDestroy`` in the child, where CUDA refuses every call with
"initialization error", and PyTorch only warns. Each child prints one line per graph it frees (8 persistent
workers x the 2 graphs of a RigL Trainer = the 16 lines issue 17 saw after ``epoch_time.py --compile``).

Each case runs in a fresh process; the parent counts the warning lines in its stderr:
- ``cycle``: a captured graph in a reference cycle, dropped, then 2 forked workers that run the collector;
- ``collected``: the same after ``gc.collect()`` in the parent (the graph is freed there, before the fork);
- ``trainer``: a real (small) Trainer with CUDA graphs, run and dropped, then the same 2 workers;
- ``trainer-collected``: the same after ``gc.collect()``.

    python benchmarks/fork_warning.py            # CUDA only
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
CASES = ("cycle", "collected", "trainer", "trainer-collected")


def _collect(_worker_id):
    gc.collect()


def child(case: str) -> None:
    import torch

    gc.disable()  # nothing is collected by chance before the fork: the cases differ only in the explicit collect
    if case.startswith("trainer"):
        from sparseopt_edu.train import TrainConfig, Trainer

        trainer = Trainer(TrainConfig(model="resnet20", dataset="fake", n_train=2048, n_test=256, method="rigl",
                                      batch_size=128, epochs=1, delta_t=4, progress=False, device="cuda"))
        trainer.run()
        step = getattr(trainer, "_graph", None)
        print(f"graph step object: {type(step).__name__}", file=sys.stderr, flush=True)
        del trainer
    else:
        class Holder:  # a graph owned by an object in a reference cycle, like Trainer <-> GraphStep
            pass

        holder = Holder()
        holder.me = holder
        x = torch.zeros(1024, device="cuda")
        holder.graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            x.add_(1)
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(holder.graph):
            x.add_(1)
        holder.graph.replay()
        torch.cuda.synchronize()
        del holder
    if case.endswith("collected"):
        gc.collect()
    gc.enable()
    data = torch.utils.data.TensorDataset(torch.arange(64.0))
    loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=2, worker_init_fn=_collect)
    total = sum(float(b[0].sum()) for b in loader)
    print(f"workers done, sum {total}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.case:
        child(args.case)
        return 0
    rows = []
    for case in CASES:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", case], capture_output=True,
                           text=True, timeout=300)
        lines = [ln for ln in r.stderr.splitlines() if "CUDAGraph.cpp" in ln]
        rows.append({"case": case, "rc": r.returncode, "s": time.perf_counter() - t0, "warnings": len(lines),
                     "first_warning": lines[0] if lines else None, "stderr_tail": r.stderr[-800:]})
        print(f"{case:18s} rc {r.returncode}  {len(lines)} CUDAGraph.cpp warnings  {lines[0] if lines else ''}",
              flush=True)
    import torch

    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"fork_warning-{card.replace(' ', '_')}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"card": card, "torch": torch.__version__, "rows": rows}, fh, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
