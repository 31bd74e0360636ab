"""What the race panel's live figure costs: time inside its figure flushes against the race's wall time.

Runs notebook 04's RacePanel headless in thread mode (as Voila and a Start click run it), with a comm that
serializes every widget message the way the kernel does (jupyter_client's JSON packer; the bytes are counted,
not sent), so a flush costs what it costs in a notebook minus the socket. The pacing that stretches a race
for a learner (RaceState.min_race_s, full mode) is off unless ``--paced``: the fraction is of the training's
own time. The first race warms up (imports, data, CUDA context) and is not counted.

    python benchmarks/figure_cost.py                 # CPU, the panel's full-mode race
    python benchmarks/figure_cost.py --device cuda   # the GPU (target: <= 2% of the race's wall time)
    python benchmarks/figure_cost.py --json out.json --repeat 3

Prints, per measured race: wall time, flushes, ms per flush (mean / median / max), the fraction of the wall
time spent in the figure (its flushes and, at the end, LiveFigure.keep_state), and the bytes its messages
would send.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class CountingComm:
    """Installs a comm whose messages are packed to JSON bytes like ipykernel's (and counted)."""

    def __init__(self):
        import comm
        from jupyter_client.session import json_packer

        self.bytes = 0
        self.messages = 0
        outer = self

        class _Comm(comm.DummyComm):
            def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
                outer.bytes += len(json_packer({"data": data, "metadata": metadata or {}}))
                outer.bytes += sum(memoryview(b).nbytes for b in buffers or [])
                outer.messages += 1

        self._module, self._before = comm, comm.create_comm
        comm.create_comm = lambda *a, **kw: _Comm(*a, **kw)

    def remove(self) -> None:
        self._module.create_comm = self._before


def bench_state(epochs: int | None, seeds: int | None, paced: bool):
    """The panel's own race (``RaceState.default()``), unpaced unless ``paced``."""
    from sparseopt_edu.widgets.race import RaceState

    kw = {}
    if epochs is not None:
        kw["epochs"] = epochs
    if seeds is not None:
        kw["seeds"] = seeds
    if not paced and "min_race_s" in {f.name for f in dataclasses.fields(RaceState)}:
        kw["min_race_s"] = 0.0
    return RaceState.default(**kw)


def on_device(device: str) -> None:
    """Every run the race builds trains on ``device`` (the panel itself picks "auto", or the CPU in fast mode)."""
    from sparseopt_edu.widgets import race

    make = race.make_trainer
    race.make_trainer = lambda cfg, callbacks, control=None: make(dict(cfg, device=device), callbacks, control)


def one_race(state, comm_counter: CountingComm) -> dict:
    from sparseopt_edu.widgets import RacePanel

    panel = RacePanel(state, mode="thread")
    times: list[float] = []
    flush = panel._flush

    def timed_flush():
        t0 = time.perf_counter()
        flush()
        times.append(time.perf_counter() - t0)

    panel._flush = timed_flush
    kept: list[float] = []  # the end of a race: the figure becomes the widget's synced state (LiveFigure)
    keep = getattr(panel.figure, "keep_state", None)
    if keep is not None:
        def timed_keep():
            t0 = time.perf_counter()
            keep()
            kept.append(time.perf_counter() - t0)

        panel.figure.keep_state = timed_keep
    bytes0 = comm_counter.bytes
    t0 = time.perf_counter()
    panel.run()
    panel.wait()
    wall = time.perf_counter() - t0
    if panel.error is not None:
        raise panel.error
    return {
        "wall_s": wall, "flushes": len(times), "flush_s": sum(times), "keep_state_s": sum(kept),
        "fraction": (sum(times) + sum(kept)) / wall,
        "ms_per_flush_mean": 1e3 * statistics.fmean(times) if times else 0.0,
        "ms_per_flush_median": 1e3 * statistics.median(times) if times else 0.0,
        "ms_per_flush_max": 1e3 * max(times) if times else 0.0,
        "bytes_sent": comm_counter.bytes - bytes0,
        "steps": panel.step, "runs": len(panel.runs_done),
        "acc": {str(k): v for k, v in panel.summary()["acc"].items()},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeat", type=int, default=2, help="measured races after the warm-up (default 2)")
    p.add_argument("--epochs", type=int, default=None, help="default: the panel's (RaceState.default())")
    p.add_argument("--seeds", type=int, default=None, help="default: the panel's (RaceState.default())")
    p.add_argument("--paced", action="store_true", help="keep the panel's learner pacing (min_race_s)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device here")
    counter = CountingComm()
    try:
        results = races(args, counter)
    finally:
        counter.remove()
    worst = max(r["fraction"] for r in results)
    print(f"worst fraction {100 * worst:.2f}% (target <= 2%)")
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "races": results}, indent=2))
    return 0


def races(args, counter: CountingComm) -> list[dict]:
    on_device(args.device)
    state = bench_state(args.epochs, args.seeds, args.paced)
    fast = os.environ.get("SPARSEOPT_EDU_FAST", "") not in ("", "0")
    print(f"race: {state.seeds} seeds x 2 arms, {state.epochs} epochs, {state.dataset}, device {args.device}"
          f"{', fast mode' if fast else ''}{', paced' if args.paced else ''}")
    one_race(state, counter)  # warm-up: imports, data set, CUDA context, first trainer
    results = []
    for k in range(args.repeat):
        r = one_race(state, counter)
        r["state"] = dataclasses.asdict(state)
        results.append(r)
        print(f"race {k + 1}: wall {r['wall_s']:.2f} s · {r['flushes']} flushes · "
              f"{r['ms_per_flush_mean']:.2f} ms/flush (median {r['ms_per_flush_median']:.2f}, max "
              f"{r['ms_per_flush_max']:.2f}) · figure {100 * r['fraction']:.2f}% of the wall time · "
              f"{r['bytes_sent'] / max(r['flushes'], 1) / 1e3:.1f} kB/flush")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
