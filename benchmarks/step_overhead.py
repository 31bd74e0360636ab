"""Overhead of masks + RigL + SparseOpt over a dense training step (issue: core library performance).

ResNet-18 (CIFAR stem), batch 512, bf16 autocast, channels_last on a GPU: a dense SGD step against the same
step with masks, RigL (delta_t = 100, amortised: one topology update per round of 100 steps) and SparseOpt.
Rounds are interleaved (dense, sparse, dense, ...) and the median per-step time over rounds is reported after a
warm-up. Target: overhead <= 3%. On a CPU the same comparison runs at a small size (``--cpu`` or no GPU).

    python benchmarks/step_overhead.py            # GPU if present, else the CPU size
    python benchmarks/step_overhead.py --cpu      # force the CPU measurement
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sparseopt_edu import RigL, SparseOpt, sparsify  # noqa: E402
from sparseopt_edu.models import resnet18, resnet20  # noqa: E402


def build(sparse: bool, device, channels_last: bool, steps_total: int, delta_t: int, arch=resnet18):
    torch.manual_seed(0)
    model = arch(num_classes=10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    if not sparse:
        return model, inner, None
    masks = sparsify(model, 0.9, "erk")
    opt = SparseOpt(inner, masks)
    dst = RigL(masks, opt, delta_t=delta_t, alpha=0.3, t_end=10 * steps_total)
    return model, opt, dst


def make_step(model, opt, dst, x, y, amp: bool):
    loss_fn = nn.CrossEntropyLoss()

    def step():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dst is not None:
            dst.step()

    return step


def timed(step, n: int, device) -> float:
    """Seconds per step over n steps (device-synchronised)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            step()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / n
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="measure on the CPU even if a GPU is present")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        batch, steps, rounds, delta_t, size, amp, cl = 512, 100, args.rounds or 7, 100, 32, True, True
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name()
        arch = resnet18
    else:
        # ResNet-18 takes seconds per step on 2 cores: the CPU number uses ResNet-20 at batch 64, same dT.
        batch, steps, rounds, delta_t, size, amp, cl = 64, 100, args.rounds or 3, 100, 32, False, False
        arch = resnet20
        name = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    x = torch.randn(batch, 3, size, size, device=device)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    steps_fn = {}
    for label, sparse in (("dense", False), ("rigl+sparseopt", True)):
        model, opt, dst = build(sparse, device, cl, steps * (rounds + 2), delta_t, arch)
        steps_fn[label] = make_step(model, opt, dst, x, y, amp)
        timed(steps_fn[label], steps, device)  # warm-up (cudnn autotune, allocator, first RigL update)
    times = {label: [] for label in steps_fn}
    for _ in range(rounds):
        for label, fn in steps_fn.items():
            times[label].append(timed(fn, steps, device))
    med = {label: statistics.median(v) for label, v in times.items()}
    overhead = med["rigl+sparseopt"] / med["dense"] - 1
    result = {
        "model": arch.__name__, "device": name, "torch": torch.__version__, "batch": batch, "steps_per_round": steps, "rounds": rounds,
        "delta_t": delta_t, "amp_bf16": amp, "channels_last": cl,
        "ms_per_step": {k: v * 1e3 for k, v in med.items()},
        "images_per_s": {k: batch / v for k, v in med.items()},
        "overhead_pct": 100 * overhead, "target_pct": 3.0, "all_rounds_ms": {k: [t * 1e3 for t in v] for k, v in times.items()},
    }
    print(f"{arch.__name__} (CIFAR stem), batch {batch}, {'bf16' if amp else 'fp32'}, device: {name}")
    print(f"{'step':<16}{'ms/step':>10}{'images/s':>12}")
    for k in med:
        print(f"{k:<16}{med[k] * 1e3:>10.2f}{batch / med[k]:>12.0f}")
    print(f"overhead of masks + RigL (dT={delta_t}, amortised) + SparseOpt: {100 * overhead:+.2f}% (target <= 3%)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"step_overhead_{'gpu' if gpu else 'cpu'}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
