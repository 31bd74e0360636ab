"""Peer race (issue 17 item 1): this library's Trainer against a dense loop and rigl-torch, one process, one card.

Five peers train the same ResNet-20 (100 classes) on the same 50,000 CIFAR-shaped images (``data.fake``), batch
128, SGD (lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, constant LR), RigL at 90% sparsity, delta_t = 100,
alpha = 0.3, updates for the first 75% of the steps. They run interleaved epoch by epoch (the order rotates each
epoch), so a clock or thermal drift of the card hits all of them alike:

- ``dense``: a plain eager loop (``loss.backward(); opt.step()``), fp32;
- ``rigl-torch``: rigl-torch 0.5.2's documented loop (``RigLScheduler(model, optimizer, dense_allocation=0.1,
  T_end=0.75 T, delta=100, alpha=0.3, sparsity_distribution="uniform")``; ``if scheduler(): optimizer.step()``),
  fp32; its only distribution is uniform with the first layer kept dense;
- ``sparseopt-edu loop``: this library in the same plain loop (``sparsify`` + ``SparseOpt`` + ``RigL``:
  ``loss.backward(); opt.step(); dst.step()``), fp32, ``--distribution`` (default uniform);
- ``Trainer (graphs)``: ``Trainer(TrainConfig(...))`` with its CUDA defaults (whole step in one CUDA graph, bf16,
  channels_last, fused SGD);
- ``Trainer (compiled)``: the same with ``compile=True``.

The plain loops read their batches from the library's ``DeviceLoader`` (the data on the card, crop + flip +
normalise as a few kernels), as the Trainer does, so the race compares training steps, not input pipelines.
Reported per peer: s/epoch (median of the steady epochs, i.e. all but the first, with their min and max), the first
epoch separately, images/s, the peer's own peak GPU memory (its resident tensors plus the transient peak of its
epochs), the final density over all conv/linear weights, whether every pruned weight is exactly 0, the number of
topology updates, and the speed ratio to rigl-torch and to dense. JSON: ``benchmarks/results/peer_race-<card>-<date>.json``.

rigl-torch is an optional benchmark dependency (its peer says "skipped: not installed" without it)::

    pip install rigl-torch==0.5.2                        # or: pip install -e ".[bench]"
    python benchmarks/peer_race.py                       # GPU: 1 + 5 epochs of every peer
    python benchmarks/peer_race.py --smoke               # any machine, tiny sizes (checks it runs, ~10 s on a CPU)

``--cache-dir`` is the compile cache (``train/compile_cache.py``); a warm cache shortens the compiled peer's first
epoch only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sparseopt_edu import RigL, SparseOpt, sparsify  # noqa: E402
from sparseopt_edu import data as data_mod  # noqa: E402
from sparseopt_edu.models import resnet20  # noqa: E402
from sparseopt_edu.train import TrainConfig, Trainer  # noqa: E402
from sparseopt_edu.train.compile_cache import cache_counters, enable_persistent_cache  # noqa: E402

PEERS = ("dense", "rigl-torch", "sparseopt-edu loop", "Trainer (graphs)", "Trainer (compiled)")
SHORT = {"dense": "dense", "rigl-torch": "rigltorch", "sparseopt-edu loop": "loop", "Trainer (graphs)": "graphs",
         "Trainer (compiled)": "compiled"}


class Skipped(Exception):
    """A peer that cannot run here (rigl-torch not installed, compile without CUDA)."""


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def allocated(device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)


def layer_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


@torch.no_grad()
def density_check(model, masks_by_weight: dict) -> dict:
    """Density over every conv/linear weight (a layer with no mask counts as live), and whether every weight its
    mask prunes is exactly 0. ``masks_by_weight``: id(weight) -> bool mask."""
    live = total = 0
    zero = True
    for w in layer_weights(model):
        mask = masks_by_weight.get(id(w))
        total += w.numel()
        if mask is None:
            live += w.numel()
            continue
        live += int(mask.sum())
        zero = zero and bool((w[~mask.bool()] == 0).all())
    return {"density": live / total, "pruned_weights_zero": zero if masks_by_weight else None,
            "masked_layers": len(masks_by_weight), "layers": len(layer_weights(model))}


class PlainLoop:
    """A plain eager loop (dense, rigl-torch's, or this library's), fp32, batches from a DeviceLoader."""

    def __init__(self, name: str, args, data, device):
        self.name, self.device = name, device
        rigl_torch = None
        if name == "rigl-torch":
            try:
                from rigl_torch.RigL import RigLScheduler as rigl_torch
            except ImportError as e:
                raise Skipped("skipped: not installed (pip install rigl-torch==0.5.2)") from e
        torch.manual_seed(args.seed)
        self.loader = data.loader("train", args.batch_size, device, seed=args.seed)
        self.model = resnet20(num_classes=data.num_classes).to(device)
        self.optimizer = sgd(self.model)
        total = args.epochs * len(self.loader)
        self.masks = self.dst = self.scheduler = None
        if name == "sparseopt-edu loop":
            self.masks = sparsify(self.model, args.sparsity, args.distribution, seed=args.seed)
            self.optimizer = SparseOpt(self.optimizer, self.masks)
            self.dst = RigL(self.masks, self.optimizer, delta_t=args.delta_t, alpha=0.3, t_end=0.75,
                            total_steps=total)
        elif name == "rigl-torch":  # rigl-torch's README, its two required lines
            self.scheduler = rigl_torch(self.model, self.optimizer, dense_allocation=1 - args.sparsity,
                                        sparsity_distribution="uniform", T_end=int(0.75 * total),
                                        delta=args.delta_t, alpha=0.3, grad_accumulation_n=1, static_topo=False,
                                        ignore_linear_layers=False, state_dict=None)
        self.steps_per_epoch = len(self.loader)
        self.features = {"amp": False, "channels_last": False, "cuda_graphs": False, "compile": False}

    def epoch(self):
        model, opt = self.model, self.optimizer
        for x, y in self.loader:  # the DeviceLoader starts the next epoch where the last one ended
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if self.scheduler is not None:
                if self.scheduler():  # rigl-torch: a topology step replaces the optimizer step
                    opt.step()
            else:
                opt.step()
                if self.dst is not None:
                    self.dst.step()
        self.last_loss = loss.detach()

    def check(self) -> dict:
        if self.scheduler is not None:  # rigl-torch keeps its masks in the scheduler, beside its weight list W
            s = self.scheduler
            by_weight = {id(w): m for w, m in zip(s.W, s.backward_masks) if m is not None}
            extra = {"topology_updates": s.rigl_steps}
        elif self.masks is not None:
            by_weight = {id(m.weight): m.weight_mask for m in self.masks.modules.values()}
            extra = {"topology_updates": len(self.dst.updates)}
        else:
            by_weight, extra = {}, {"topology_updates": 0}
        return {**density_check(self.model, by_weight), **extra, "final_loss": float(self.last_loss)}

    def close(self):
        pass


class TrainerPeer:
    """``Trainer(TrainConfig(...))``, driven one epoch at a time through ``Trainer.iterate()``."""

    def __init__(self, name: str, args, data, device):
        self.name, self.device = name, device
        compile_ = name == "Trainer (compiled)"
        if compile_ and device.type != "cuda":
            raise Skipped("skipped: compile runs here on CUDA only (on a CPU it takes minutes)")
        cfg = TrainConfig(model="resnet20", dataset="fake", n_train=args.n, n_test=args.n_test, method="rigl",
                          sparseopt=True, sparsity=args.sparsity, distribution=args.distribution,
                          optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          schedule="constant", batch_size=args.batch_size, epochs=args.epochs,
                          delta_t=args.delta_t, alpha=0.3, t_end=0.75, seed=args.seed, device=str(device),
                          compile=compile_, eval_every_epochs=args.epochs, progress=False,
                          data_kwargs={} if args.size == 32 else {"shape": (3, args.size, args.size)})
        self.trainer = Trainer(cfg)
        self.steps_per_epoch = self.trainer.steps_per_epoch
        self.features = dict(self.trainer.features)
        self._steps = self.trainer.iterate()

    def epoch(self):
        for _ in range(self.steps_per_epoch):
            next(self._steps)

    def check(self) -> dict:
        t = self.trainer
        by_weight = {id(m.weight): m.weight_mask for m in t.masks.modules.values()}
        loss = t.history.train_loss[-1] if t.history.train_loss else None
        return {**density_check(t.model, by_weight), "topology_updates": len(t.dst.updates),
                "final_loss": loss}

    def close(self):
        self._steps.close()  # stops before the last epoch's evaluation (not part of the race)


def build(name, args, data, device):
    return (TrainerPeer if name.startswith("Trainer") else PlainLoop)(name, args, data, device)


def race(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the Trainer switches it on process-wide anyway: the same for all
    compiled = "Trainer (compiled)" in args.peers and device.type == "cuda"
    cache = enable_persistent_cache(args.cache_dir) if compiled else None
    data = data_mod.fake(args.n, shape=(3, args.size, args.size), num_classes=100, n_test=args.n_test)
    peers, rows = [], {}
    for name in args.peers:
        before = allocated(device)
        t0 = time.perf_counter()
        try:
            peer = build(name, args, data, device)
        except Skipped as e:
            rows[name] = {"skipped": str(e)}
            print(f"{name}: {e}", flush=True)
            continue
        sync(device)
        peer.resident = allocated(device) - before
        peers.append(peer)
        rows[name] = {"build_s": time.perf_counter() - t0, "epoch_times_s": [], "own_peak_mib": None,
                      "features": peer.features, "steps_per_epoch": peer.steps_per_epoch}
    for epoch in range(args.epochs):
        k = epoch % max(1, len(peers))
        for peer in peers[k:] + peers[:k]:  # rotate the order: no peer always runs right after the same one
            sync(device)
            before = allocated(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            peer.epoch()
            sync(device)
            dt = time.perf_counter() - t0
            row = rows[peer.name]
            row["epoch_times_s"].append(dt)
            if device.type == "cuda":
                peak = peer.resident + torch.cuda.max_memory_allocated(device) - before
                row["own_peak_mib"] = max(row["own_peak_mib"] or 0, peak / 2**20)
                peer.resident += allocated(device) - before  # state made in this epoch (momentum, graphs)
            print(f"epoch {epoch + 1}/{args.epochs} {peer.name:20s} {dt:8.3f} s", flush=True)
    for peer in peers:
        row = rows[peer.name]
        times = row["epoch_times_s"]
        steady = times[1:] or times
        row.update({"first_epoch_s": times[0], "steady_epoch_s": statistics.median(steady),
                    "steady_min_s": min(steady), "steady_max_s": max(steady), "steady_epochs": len(steady),
                    "images_per_s": peer.steps_per_epoch * args.batch_size / statistics.median(steady)})
        row.update(peer.check())
        row["density_ok"] = abs(row["density"] - (1.0 if peer.name == "dense" else 1 - args.sparsity)) < 0.01
        peer.close()
    for base in ("rigl-torch", "dense"):
        ref = rows.get(base, {}).get("steady_epoch_s")
        for row in rows.values():
            if ref and "steady_epoch_s" in row:
                row[f"speedup_vs_{SHORT[base]}"] = ref / row["steady_epoch_s"]
    return {"rows": rows, "compile_cache": cache, "compile_cache_counters": cache_counters() if cache else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6, help="epochs of every peer; the first is reported apart (6)")
    p.add_argument("--n", type=int, default=50_000, help="training images (default 50,000)")
    p.add_argument("--n-test", type=int, default=1_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--size", type=int, default=32, help="image side (default 32, CIFAR)")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--delta-t", type=int, default=100)
    p.add_argument("--distribution", choices=("uniform", "erk", "er"), default="uniform",
                   help="this library's layer-wise sparsity (rigl-torch has uniform only; default uniform)")
    p.add_argument("--peers", default=",".join(SHORT[n] for n in PEERS),
                   help=f"comma-separated subset of {','.join(SHORT.values())}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=None, help="compile cache folder (default: compile_cache.default_dir())")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (CPU is fine)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    by_short = {v: k for k, v in SHORT.items()}
    unknown = [s for s in args.peers.split(",") if s not in by_short]
    if unknown:
        p.error(f"unknown peer(s) {unknown}: choose from {','.join(SHORT.values())}")
    args.peers = [by_short[s] for s in args.peers.split(",")]
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.smoke:
        args.n, args.n_test, args.batch_size, args.epochs, args.delta_t, args.size = 64, 16, 16, 2, 2, 8
    cuda = args.device.startswith("cuda")
    card = torch.cuda.get_device_name(torch.device(args.device)) if cuda else f"CPU {platform.machine()}"
    print(f"device: {card}; torch {torch.__version__}; {args.n} images of {args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.epochs} epochs interleaved", flush=True)
    result = race(args)
    rows = result["rows"]
    print(f"\n{'peer':20s} {'first s':>8s} {'s/epoch':>8s} {'min-max':>13s} {'img/s':>8s} {'x rigl-torch':>12s} "
          f"{'x dense':>8s} {'MiB':>6s} {'density':>8s} {'pruned=0':>8s} {'updates':>7s}")
    for name, r in rows.items():
        if "skipped" in r:
            print(f"{name:20s} {r['skipped']}")
            continue
        mib = f"{r['own_peak_mib']:6.0f}" if r["own_peak_mib"] is not None else f"{'-':>6s}"
        vs = f"{r['speedup_vs_rigltorch']:12.2f}" if "speedup_vs_rigltorch" in r else f"{'-':>12s}"
        print(f"{name:20s} {r['first_epoch_s']:8.2f} {r['steady_epoch_s']:8.3f} "
              f"{r['steady_min_s']:6.3f}-{r['steady_max_s']:6.3f} {r['images_per_s']:8.0f} {vs} "
              f"{r['speedup_vs_dense']:8.2f} {mib} {r['density']:8.4f} {str(r['pruned_weights_zero']):>8s} "
              f"{r['topology_updates']:7d}")
    bad = [n for n, r in rows.items() if "skipped" not in r and not (r["density_ok"] and r["pruned_weights_zero"]
                                                                     in (True, None))]
    if bad:
        print(f"CHECK FAILED for {bad}: density off target or a pruned weight is not 0")
    os.makedirs(args.out, exist_ok=True)
    tag = "smoke" if args.smoke else card.replace(" ", "_").replace("/", "_")
    path = os.path.join(args.out, f"peer_race-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"card": card, "torch": torch.__version__, "command": " ".join(sys.argv),
                   "args": {k: v for k, v in vars(args).items()}, **result, "checks_failed": bad}, fh, indent=1,
                  default=str)
    print(f"wrote {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
