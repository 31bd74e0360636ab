"""Bit-for-bit agreement of the ranks under torchrun: at every topology update, masks, weights, SparseOpt scales
and optimizer state are hashed on every rank and compared.

    torchrun --standalone --nproc_per_node 2 tools/rank_digests.py --out DIR [sparseopt-edu train flags]

The run is the one ``sparseopt-edu train`` builds from the same flags (its parser, its TrainConfig, the Trainer;
``--name``/``--runs`` write the run folder on rank 0 as the CLI does). ``dst.core.check_ranks_agree`` already
compares per-layer sums at every update; this compares every tensor's bytes (sha256), the optimizer state
included, and also checks on every rank that weights and optimizer state outside the masks are exactly 0.

Each rank writes ``DIR/rank<R>.jsonl``: a "start" line (the initial state and this rank's data shard), one
"update" line per DST update (its record and the digests after it), an "end" line. At each of these points the
ranks all-gather their digests; rank 0 prints whether they agree, and all ranks exit with status 1 at the first
point where they do not (the same decision on every rank: they all see the same gathered lists).
BatchNorm running statistics are left out: on CPU each rank keeps its own (docs: per-rank statistics).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys


def digest(t) -> str:
    """sha256 of a tensor's dtype, shape and bytes (bit for bit, NaN patterns included)."""
    import torch

    t = t.detach().cpu().contiguous().reshape(-1)
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update((t.view(torch.uint8) if t.numel() else t).numpy().tobytes())
    return h.hexdigest()[:16]


def state_digests(trainer) -> dict[str, str]:
    """``{kind/name: digest}`` for every mask, parameter, SparseOpt scale and optimizer-state tensor."""
    import torch

    out = {}
    names = {p: name for name, p in trainer.model.named_parameters()}
    for p, name in names.items():
        out[f"weight/{name}"] = digest(p)
    if trainer.masks is not None:
        for name, module in trainer.masks.modules.items():
            out[f"mask/{name}"] = digest(module.weight_mask)
            out[f"scale/{name}"] = digest(module.weight_grad_scale)  # mask x sqrt(d_i / d_mean), what SparseOpt uses
    for p, name in names.items():
        for key, value in trainer.optimizer.state.get(p, {}).items():
            if torch.is_tensor(value):
                out[f"optimizer/{name}/{key}"] = digest(value)
    return out


def snapshot(trainer, kind: str, **extra) -> dict:
    line = {"kind": kind, "step": trainer.step, "rank": trainer.dist.rank if trainer.dist else 0, **extra,
            "digests": state_digests(trainer)}
    if trainer.masks is not None:
        line["inactive_max"] = trainer.masks.inactive_max()  # |w| and |optimizer state| outside the masks: 0
    return line


def compare(lines: list[dict]) -> list[str]:
    """What differs between the ranks' lines of one point (empty when they agree and every inactive entry is 0)."""
    problems = []
    keys = sorted(set().union(*(line["digests"] for line in lines)))
    for key in keys:
        values = [line["digests"].get(key) for line in lines]
        if len(set(values)) > 1:
            problems.append(f"{key} differs: " + ", ".join(f"rank {r} {v}" for r, v in enumerate(values)))
    for line in lines:
        for what, value in line.get("inactive_max", {}).items():
            if value != 0.0:
                problems.append(f"rank {line['rank']}: max |{what}| outside the masks is {value:.3g}, not 0")
    if len({line["step"] for line in lines}) > 1:
        problems.append("ranks are at different steps: " + ", ".join(str(line["step"]) for line in lines))
    return problems


def summary(line: dict) -> str:
    counts: dict[str, int] = {}
    for key in line["digests"]:
        kind = key.split("/")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def main(argv=None) -> int:
    from sparseopt_edu.cli.args import add_threads_flag, set_threads
    from sparseopt_edu.cli.config import config_flags, config_from_args

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for rank<R>.jsonl")
    p.add_argument("--name", help="run folder under --runs (rank 0 writes it, as sparseopt-edu train does)")
    p.add_argument("--runs", default="runs")
    add_threads_flag(p)
    config_flags(p)
    args = p.parse_args(argv)
    set_threads(args)

    import torch.distributed as dist

    from sparseopt_edu.train import Trainer, distributed

    cfg = config_from_args(args, run_dir=os.path.join(args.runs, args.name) if args.name else None)
    trainer = Trainer(cfg)
    if trainer.dist is None:
        print("rank_digests: not launched by torchrun (no RANK/WORLD_SIZE): nothing to compare", file=sys.stderr)
        return 2
    rank, world = trainer.dist.rank, trainer.dist.world_size
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"rank{rank}.jsonl")
    main_rank = rank == 0

    def check(line: dict, label: str) -> bool:
        with open(path, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        gathered = [None] * world
        dist.all_gather_object(gathered, line)
        problems = compare(gathered)
        if main_rank:
            verdict = "ranks agree bit for bit" if not problems else "RANKS DIFFER"
            print(f"{label}: {verdict} on {len(line['digests'])} tensors ({summary(line)}); inactive max "
                  f"{line.get('inactive_max')}", flush=True)
            for problem in problems[:20]:
                print(f"  {problem}", flush=True)
        return not problems

    data = trainer.data
    shard = {"train_images": len(data), "digest": digest(data.train_x), "local_rank": trainer.dist.local_rank}
    ok = check(snapshot(trainer, "start", world=world, shard=shard), "start")
    gathered = [None] * world
    dist.all_gather_object(gathered, shard)
    if len({s["train_images"] for s in gathered}) > 1 or len({s["digest"] for s in gathered}) < world:
        ok = False
        if main_rank:
            print(f"data shards must be equally long and distinct: {gathered}", flush=True)
    elif main_rank:
        print(f"data shards: {world} distinct shards of {shard['train_images']} images; local ranks "
              f"{[s['local_rank'] for s in gathered]}", flush=True)

    seen = 0
    updates = 0
    for _ in trainer.iterate() if ok else ():
        records = trainer.dst.updates if trainer.dst is not None else []
        for record in records[seen:]:
            updates += 1
            label = (f"update {updates} at step {trainer.step} (DST t {record['step']}, "
                     f"{'changed' if record.get('changed') else 'no change'})")
            ok = check(snapshot(trainer, "update", record=record), label)
            if not ok:
                break
        seen = len(records)
        if not ok:
            break
    if not ok:
        trainer.release()  # the run folder's lock (the loop was left mid-run)
    else:
        ok = check(snapshot(trainer, "end", reason=trainer.history.reason, updates=updates,
                            topology_events=len(trainer.history.topology)), f"end ({trainer.history.reason})")
    done = (f"rank_digests: {'OK' if ok else 'FAILED'}: {world} ranks, {trainer.step} steps, {updates} DST updates "
            f"({len(trainer.history.topology)} topology events); per-rank files in {args.out}")
    distributed.shutdown()
    # Free the DDP wrapper (it holds the process group) now, not at interpreter exit: once, out of ~15 runs, a rank
    # aborted after its last line with "terminate called without an active exception" (gloo's threads torn down
    # during finalization).
    del trainer
    gc.collect()
    if main_rank:
        print(done, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
