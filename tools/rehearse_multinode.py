"""Rehearse the README's multi-node recipe on one host: two "nodes" of one CPU process each (gloo), started as
two separate torchrun commands that meet at a localhost rendezvous.

    python tools/rehearse_multinode.py                # prints every command, every check, and OK or FAILED
    python tools/rehearse_multinode.py --workdir DIR  # keep the run folders and logs there

1. The recipe itself: ``torchrun --nnodes 2 --node_rank K --nproc_per_node 1 --master_addr 127.0.0.1
   --master_port P -m sparseopt_edu.cli train ... --name multinode`` for K = 0 and 1, at the same time. Checked:
   both exit 0; node 0 (global rank 0) prints the run (ranks=2) and writes runs/multinode/ (checkpoint, history
   with >= 2 topology updates, reason done); node 1 prints nothing and writes no run folder. Each node runs in
   its own folder (node0/, node1/), as on two machines without a shared filesystem. The ranks compare
   per-layer sums at every update on their own (``dst.core.check_ranks_agree``: a difference stops the run).
2. The same flags on two nodes again under ``tools/rank_digests.py``: every rank hashes every mask, weight,
   SparseOpt scale and optimizer-state tensor at the start, at every DST update and at the end; the rank files
   are compared here, line by line, and node 1's final masks and weights against the checkpoint node 0 wrote in
   step 1 (the same configuration on CPU with one thread: bit for bit the same run).

On GPUs the recipe is the same with the nccl backend (chosen by the trainer on CUDA); that was not rehearsed here.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from rank_digests import digest  # noqa: E402

TRAIN = ["--dataset", "digits", "--model", "mlp", "--hidden", "64", "--method", "rigl", "--delta-t", "20",
         "--batch-size", "16", "--threads", "1", "--progress", "false"]


def torchrun() -> list[str]:
    exe = Path(sys.executable).parent / "torchrun"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(target: list[str], cwd: Path, tag: str, timeout: float) -> list[dict]:
    """Start node 0 and node 1 (two torchrun commands, one process each, each in its own folder ``cwd/node<K>``,
    as on two machines without a shared filesystem) and wait for both."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = []
    for node in (0, 1):
        cmd = [*torchrun(), "--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(port), *target]
        print(f"[{tag}] node {node}: {' '.join(cmd)}", flush=True)
        (cwd / f"node{node}").mkdir(exist_ok=True)
        log = {k: open(cwd / f"{tag}_node{node}.{k}", "w+") for k in ("out", "err")}
        procs.append((node, log, subprocess.Popen(cmd, cwd=cwd / f"node{node}", env=env, stdout=log["out"],
                                                   stderr=log["err"], start_new_session=True)))
    t0, results, failed_at = time.perf_counter(), [], None
    while any(proc.poll() is None for _, _, proc in procs):  # one node failing leaves the other waiting: 10 s
        now = time.perf_counter()
        if failed_at is None and any(proc.poll() not in (None, 0) for _, _, proc in procs):
            failed_at = now
        if now - t0 > timeout or (failed_at is not None and now - failed_at > 10):
            for node, _, proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its worker (its own session)
                    print(f"[{tag}] node {node} still running after {now - t0:.0f} s: killed", flush=True)
        time.sleep(0.1)
    for node, log, proc in procs:
        rc = proc.wait()
        out, err = (log[k].seek(0) or log[k].read() for k in ("out", "err"))
        for fh in log.values():
            fh.close()
        results.append({"node": node, "rc": rc, "out": out, "err": err})
    print(f"[{tag}] both nodes ended after {time.perf_counter() - t0:.1f} s: exit codes "
          f"{[r['rc'] for r in results]}", flush=True)
    return results


class Checks:
    def __init__(self):
        self.failed = 0

    def __call__(self, ok: bool, what: str, detail: str = "") -> bool:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else ""), flush=True)
        self.failed += not ok
        return ok


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", help="where the runs and logs go (default: a temporary folder, removed at the end)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=240, help="seconds each pair of nodes may take")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rehearse_multinode_"))
    work.mkdir(parents=True, exist_ok=True)
    flags = [*TRAIN, "--epochs", str(args.epochs)]
    check = Checks()
    t0 = time.perf_counter()
    try:
        print(f"rehearsal in {work}: 2 nodes x 1 process, gloo on CPU, localhost rendezvous", flush=True)
        # 1. the README's recipe, as it is
        node0, node1 = two_nodes(["-m", "sparseopt_edu.cli", "train", *flags, "--name", "multinode"], work,
                                 "recipe", args.timeout)
        run = work / "node0" / "runs" / "multinode"
        check(node0["rc"] == 0 and node1["rc"] == 0, "both nodes exit 0", f"{node0['rc']}, {node1['rc']}"
              + ("" if node0["rc"] == node1["rc"] == 0 else "\n" + (node0["err"] + node1["err"])[-3000:]))
        check("ranks=2" in node0["out"] and node0["out"].count("end: done") == 1,
              "node 0 (rank 0) prints the run: ranks=2, end: done",
              next((line for line in node0["out"].splitlines() if line.startswith("training")), "no 'training' line"))
        check(node1["out"].strip() == "" and not (work / "node1" / "runs").exists(),
              "node 1 (rank 1) prints nothing and writes no run folder", repr(node1["out"][:200]))
        history = json.loads((run / "history.json").read_text()) if (run / "history.json").exists() else {}
        steps = history.get("config", {}).get("steps")
        n_updates = len(history.get("topology", []))
        check((run / "checkpoint.pt").exists() and history.get("reason") == "done",
              "rank 0 wrote runs/multinode/ (checkpoint.pt, history.json, reason done)",
              ", ".join(sorted(f.name for f in run.iterdir())) if run.exists() else "no run folder")
        check(n_updates >= 2, "at least two topology updates", f"{n_updates} at steps "
              f"{[t['step'] for t in history.get('topology', [])]}, {len(history.get('epoch', []))} epochs"
              + (f", {steps} steps" if steps else ""))

        # 2. the same flags under rank_digests: bit-for-bit agreement at every update, and with step 1's result
        node0, node1 = two_nodes([str(ROOT / "tools" / "rank_digests.py"), "--out", "digests", *flags], work,
                                 "digests", args.timeout)
        check(node0["rc"] == 0 and node1["rc"] == 0, "both nodes exit 0", f"{node0['rc']}, {node1['rc']}"
              + ("" if node0["rc"] == node1["rc"] == 0 else "\n" + (node0["out"] + node0["err"])[-3000:]))
        a, b = (read_lines(work / f"node{k}" / "digests" / f"rank{k}.jsonl") for k in (0, 1))
        updates = [line for line in a if line["kind"] == "update"]
        same = len(a) == len(b) > 0 and all(x["digests"] == y["digests"] and x["step"] == y["step"]
                                           for x, y in zip(a, b))
        tensors = len(a[-1]["digests"]) if a else 0
        check(same, "masks, weights, SparseOpt scales, optimizer state identical on both nodes at the start, "
              "at every update and at the end", f"{len(updates)} updates at steps {[u['step'] for u in updates]}, "
              f"{tensors} tensors each")
        zero = all(v == 0.0 for line in a + b for v in line.get("inactive_max", {}).values())
        check(zero, "weights and optimizer state outside the masks are 0 on both nodes at every point")
        shards = [line.get("shard", {}) for line in (a[:1] + b[:1])]
        check(len(shards) == 2 and shards[0].get("train_images") == shards[1].get("train_images")
              and shards[0].get("digest") != shards[1].get("digest"),
              "each node trains on its own shard, equally long", str(shards))
        if (run / "checkpoint.pt").exists() and b:
            import torch

            state = torch.load(run / "checkpoint.pt", weights_only=False)
            final = b[-1]["digests"]
            mine = {f"weight/{k}": digest(v) for k, v in state["model"].items() if f"weight/{k}" in final}
            mine.update({f"mask/{k}": digest(v) for k, v in state["masks"]["masks"].items()})
            differ = [k for k, v in mine.items() if final.get(k) != v]
            check(len(mine) > 0 and not differ, "node 1's final masks and weights equal the checkpoint node 0 "
                  "wrote in step 1", f"{len(mine)} tensors compared" + (f"; differ: {differ}" if differ else ""))
        print(f"rehearsal {'OK' if not check.failed else f'FAILED ({check.failed} checks)'} in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        return 0 if not check.failed else 1
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
