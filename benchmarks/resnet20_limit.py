"""Where a ResNet-20 training epoch's time goes on one GPU, and how close it is to the card's limit (issue 17.3).

One process, one card, ResNet-20 at batch 128, 50,000 images per epoch, RigL + SparseOpt 90% (ERK, delta_t 100),
bf16 autocast and channels_last (the Trainer's CUDA defaults). For each Trainer variant (``graphs``: the whole
step in one CUDA graph; ``compiled``: the same with ``compile=True``):
- the steady epoch (wall clock, after one warm-up epoch): what ``peer_race.py`` reports;
- the replay alone: the captured step's graph replayed ``steps_per_epoch`` times, timed with CUDA events (the GPU
  time of an epoch with no Python loop around it);
- the kernel table of a few replays (``torch.profiler``): the kernels of one step, their GPU time, grouped
  (convolutions, fused Triton kernels, optimizer, ...).
Then the floors, i.e. what the card does with this model and batch and nothing else: a dense step (forward,
backward, fused SGD; no masks, no data augmentation, one fixed batch) in a CUDA graph, eager kernels and compiled;
and the eager dense step at larger batches (images/s: how far batch 128 is from filling the card).

    python benchmarks/resnet20_limit.py                       # GPU
    python benchmarks/resnet20_limit.py --variants graphs     # skip the compiled Trainer
    python benchmarks/resnet20_limit.py --smoke               # tiny sizes on any machine (checks it runs)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_overhead import kernel_times, profile_steps, timed  # noqa: E402

from sparseopt_edu.models import resnet20  # noqa: E402
from sparseopt_edu.train import TrainConfig, Trainer  # noqa: E402

GROUPS = (  # kernel name pattern -> group (first match wins)
    ("optimizer", r"sgd|multi_tensor|foreach|fused_adam"),
    ("convolution", r"conv|cudnn|cutlass|sm90_|sm80_|implicit|wgrad|dgrad|xmma|nhwc|winograd|gemm"),
    ("fused (Triton)", r"^triton_"),
    ("batch norm", r"batch_norm|bn_|welford"),
    ("elementwise / reduce", r"elementwise|reduce|vectorized|unrolled"),
    ("copy / index", r"copy|index|gather|scatter|pad|cat"),
)


def group_of(name: str) -> str:
    low = name.lower()
    for group, pattern in GROUPS:
        if re.search(pattern, low):
            return group
    return "other"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(compile_: bool, args) -> Trainer:
    cfg = TrainConfig(model="resnet20", dataset="fake", n_train=args.n, n_test=256, method="rigl", sparseopt=True,
                      sparsity=0.9, distribution="erk", optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                      weight_decay=5e-4, schedule="constant", batch_size=args.batch_size, epochs=args.epochs + 2,
                      delta_t=100, alpha=0.3, t_end=0.75, seed=0, device=args.device, compile=compile_,
                      eval_every_epochs=args.epochs + 2, progress=False)
    return Trainer(cfg)


def kernel_summary(replay, device, steps: int = 5, top: int = 12) -> dict:
    prof = profile_steps(replay, steps, device)
    table = kernel_times(prof, steps, device.type == "cuda")  # name -> (us/step, calls/step)
    groups: dict[str, list[float]] = {}
    for name, (us, calls) in table.items():
        g = groups.setdefault(group_of(name), [0.0, 0.0])
        g[0] += us
        g[1] += calls
    rows = sorted(table.items(), key=lambda kv: -kv[1][0])
    return {"kernel_us_per_step": sum(us for us, _ in table.values()),
            "kernels_per_step": sum(calls for _, calls in table.values()),
            "groups": {g: {"us": round(v[0], 1), "kernels": round(v[1], 1)}
                       for g, v in sorted(groups.items(), key=lambda kv: -kv[1][0])},
            "top": [{"kernel": name[:120], "us": round(us, 1), "calls": round(calls, 1)}
                    for name, (us, calls) in rows[:top]]}


def trainer_variant(name: str, args, device) -> dict:
    t0 = time.perf_counter()
    trainer = make_trainer(name == "compiled", args)
    steps = trainer.iterate()
    spe = trainer.steps_per_epoch
    for _ in range(spe):  # warm-up epoch: capture (and compile)
        next(steps)
    sync(device)
    first = time.perf_counter() - t0
    walls = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        for _ in range(spe):
            next(steps)
        sync(device)
        walls.append(time.perf_counter() - t)
    steps.close()
    out = {"variant": name, "first_epoch_s": first, "epoch_s": walls, "steady_epoch_s": min(walls),
           "steps_per_epoch": spe, "features": dict(trainer.features)}
    graph = trainer._graph.graph if trainer._graph is not None else None  # benchmark-only: the captured step
    if graph is not None:
        ms = min(timed(graph.replay, spe, device) for _ in range(3))
        out.update(replay_ms_per_step=ms, replay_epoch_s=ms * spe / 1e3,
                   loop_overhead_pct=100 * (out["steady_epoch_s"] / (ms * spe / 1e3) - 1))
        out["kernels"] = kernel_summary(graph.replay, device)
    return out


def dense_step(batch: int, device, compile_: bool, graph: bool, set_to_none: bool = False,
               channels_last: bool = True):
    """A dense ResNet-20 step on one fixed batch (forward, loss, backward, fused SGD), as a callable.
    ``set_to_none``: gradients set to None before backward (written, not accumulated: no add per parameter)."""
    torch.manual_seed(0)
    model = resnet20(num_classes=100).to(device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda  # as the Trainer sets it (off, cuDNN's heuristics pick slower kernels)
    channels_last = channels_last and cuda
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch,), device=device)
    lr = torch.tensor(0.1, device=device) if cuda else 0.1
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          **({"fused": True} if cuda else {}))

    def loss_of(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda, cache_enabled=False):
            out = model(x)
        return F.cross_entropy(out.float(), y)

    loss_fn = torch.compile(loss_of, mode="max-autotune-no-cudagraphs") if compile_ else loss_of

    def step():
        opt.zero_grad(set_to_none=set_to_none)
        loss_fn(x, y).backward()
        opt.step()

    if not (graph and cuda):
        for _ in range(3):
            step()
        return step
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return g.replay


FLOORS = {  # name -> (compile, set_to_none, channels_last)
    "graph": (False, False, True), "graph, grads set to None": (False, True, True),
    "graph, compiled": (True, False, True), "graph, compiled, grads set to None": (True, True, True),
    "graph, compiled, NCHW": (True, False, False), "graph, compiled, NCHW, grads set to None": (True, True, False),
}


def floors(args, device) -> list[dict]:
    rows = []
    spe = args.n // args.batch_size
    names = [n for n in args.floors if device.type == "cuda" or "compiled" not in n]
    for name, batch in [*[(n, args.batch_size) for n in names], *[("graph", b) for b in args.large_batches]]:
        compile_, set_to_none, channels_last = FLOORS[name]
        replay = dense_step(batch, device, compile_, graph=True, set_to_none=set_to_none,
                            channels_last=channels_last)
        ms = min(timed(replay, max(20, spe // 4), device) for _ in range(3))
        row = {"floor": name, "batch": batch, "ms_per_step": ms, "images_per_s": batch / ms * 1e3,
               "epoch_s_at_batch": args.n / batch * ms / 1e3}
        if batch == args.batch_size:
            row["kernels"] = kernel_summary(replay, device)
        row["features"] = {"compile": compile_, "grads_set_to_none": set_to_none, "channels_last": channels_last}
        rows.append(row)
        print(f"floor dense, {name:40s} batch {batch:5d}: {ms:7.3f} ms/step, {row['images_per_s']:9.0f} images/s, "
              f"{row['epoch_s_at_batch']:.3f} s per {args.n} images", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="graphs,compiled", help="Trainer variants: graphs, compiled")
    p.add_argument("--epochs", type=int, default=3, help="steady epochs per variant after the warm-up (default 3)")
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--large-batches", default="512,2048", help="dense floors at these batches too (images/s)")
    p.add_argument("--floors", default="graph;graph, compiled", help=f"';'-separated, of: {'; '.join(FLOORS)}")
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (CPU is fine)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.large_batches = [int(b) for b in args.large_batches.split(",") if b]
    args.floors = [f.strip() for f in args.floors.split(";") if f.strip()]
    unknown = [f for f in args.floors if f not in FLOORS]
    if unknown:
        p.error(f"--floors: unknown {unknown}; choose from {list(FLOORS)}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.smoke:
        args.n, args.batch_size, args.epochs, args.large_batches = 256, 32, 1, [64]
        args.variants = [v for v in args.variants if v != "compiled" or device.type == "cuda"]
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {card}; torch {torch.__version__}", flush=True)
    variants = []
    for name in args.variants:
        r = trainer_variant(name, args, device)
        variants.append(r)
        extra = (f"; replay alone {r['replay_epoch_s']:.3f} s/epoch ({r['replay_ms_per_step']:.3f} ms/step), "
                 f"{r['kernels']['kernels_per_step']:.0f} kernels/step, {r['kernels']['kernel_us_per_step']:.0f} "
                 f"us of kernels/step" if "replay_ms_per_step" in r else "")
        print(f"Trainer {name:9s}: first epoch {r['first_epoch_s']:.1f} s, steady {r['steady_epoch_s']:.3f} s/epoch"
              f" (all {[round(v, 3) for v in r['epoch_s']]}){extra}", flush=True)
        if "kernels" in r:
            print("   by group (us/step, kernels/step):",
                  ", ".join(f"{g} {v['us']:.0f}/{v['kernels']:.0f}" for g, v in r["kernels"]["groups"].items()))
    floor_rows = floors(args, device)
    os.makedirs(args.out, exist_ok=True)
    tag = "smoke" if args.smoke else card.replace(" ", "_").replace("/", "_")
    path = os.path.join(args.out, f"resnet20_limit-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"card": card, "torch": torch.__version__, "command": " ".join(sys.argv), "n": args.n,
                   "batch_size": args.batch_size, "variants": variants, "floors": floor_rows}, fh, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
