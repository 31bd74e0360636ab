"""Data-parallel scaling of RigL + SparseOpt training: images/s on 1 and N GPUs, measured in one call.

ResNet-18 (CIFAR stem), batch 256 per GPU, bf16, RigL (delta_t 100) + SparseOpt at 90% ERK, synthetic data
resident on each GPU, DDP (broadcast_buffers=False), eager steps. Throughput is the global
images/s of the steady state (median of the logged windows after the first). Efficiency = images/s on N GPUs
over N x images/s on 1 GPU (target >= 90%), with per-rank BN statistics and with SyncBatchNorm. Also a correctness run: ResNet-20 on `shapes` (100 classes) for a
few epochs on N GPUs, where every topology update checks that masks, weights and SparseOpt scales agree
on all ranks (dst.core.check_ranks_agree raises otherwise).

    python benchmarks/ddp_scaling.py --gpus 2      # launches torchrun itself for 1 and 2 processes
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(args) -> None:
    """One rank (under torchrun): train and print a JSON line on rank 0."""
    import torch

    from sparseopt_edu.train import TrainConfig, Trainer, distributed

    if args.correctness:
        cfg = TrainConfig(model="resnet20", dataset="shapes", data_kwargs={"num_classes": 100}, n_train=args.images,
                          n_test=1000, method="rigl", sparsity=0.9, epochs=args.epochs, batch_size=128,
                          delta_t=50, progress=False, log_every=50)
    else:
        cfg = TrainConfig(model="resnet18", dataset="fake", data_kwargs={"num_classes": 10},
                          n_train=256 * args.steps_per_epoch * int(os.environ["WORLD_SIZE"]), n_test=256,
                          method="rigl", sparsity=0.9, epochs=args.epochs, batch_size=256, delta_t=100,
                          progress=False, log_every=50, eval_every_epochs=args.epochs, skew_every="never",
                          sync_bn=args.sync_bn, ddp_grad_dtype=args.grad_dtype)
    trainer = Trainer(cfg)
    history = trainer.run()
    if trainer.is_main:
        ips = ([r["images_per_s"] for r in history.step_log[1:]] or [r["images_per_s"] for r in history.step_log]
               or list(history.images_per_s))
        world = trainer.dist.world_size if trainer.dist else 1
        print("RESULT " + json.dumps({
            "world": world, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "images_per_s_per_rank": statistics.median(ips), "images_per_s": world * statistics.median(ips),
            "reason": history.reason, "topology_updates": len(history.topology),
            "final_test_acc": history.test_acc[-1] if history.test_acc else None,
            "sync_bn": trainer.features.get("sync_bn"),
        }), flush=True)
    distributed.shutdown()


def launch(n: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__,
           "--worker", *extra]
    env = {**os.environ, "NCCL_NVLS_ENABLE": "0", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"torchrun with {n} process(es) failed:\n{out.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--images", type=int, default=20000, help="shapes images for the correctness run")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--correctness", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sync-bn", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--grad-dtype", choices=("fp32", "bf16"), default="fp32", help="DDP all-reduce dtype")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    common = ["--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch),
              "--grad-dtype", args.grad_dtype]
    correct = launch(args.gpus, ["--correctness", "--epochs", "3", "--images", str(args.images)])
    print(f"correctness on {args.gpus} ranks: {correct['topology_updates']} topology updates, ranks agreed at "
          f"each; reason {correct['reason']}; test acc {correct['final_test_acc']}; SyncBN {correct['sync_bn']}")
    one = launch(1, common)
    many = launch(args.gpus, common)  # per-rank BatchNorm statistics
    synced = launch(args.gpus, [*common, "--sync-bn"])  # SyncBatchNorm: a collective per BN layer and pass
    eff = many["images_per_s"] / (args.gpus * one["images_per_s"])
    eff_sync = synced["images_per_s"] / (args.gpus * one["images_per_s"])
    print(f"ResNet-18 bf16, batch 256/GPU, RigL + SparseOpt, {one['device']}, all-reduce in {args.grad_dtype}")
    print(f"1 GPU: {one['images_per_s']:.0f} images/s")
    print(f"{args.gpus} GPUs, per-rank BN: {many['images_per_s']:.0f} images/s, efficiency {100 * eff:.1f}% (target >= 90%)")
    print(f"{args.gpus} GPUs, SyncBatchNorm: {synced['images_per_s']:.0f} images/s, efficiency {100 * eff_sync:.1f}%")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ddp_scaling_{args.gpus}gpu_{args.grad_dtype}.json").write_text(json.dumps(
        {"correctness": correct, "one": one, "many": many, "efficiency": eff, "many_sync_bn": synced,
         "efficiency_sync_bn": eff_sync}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
