"""Several runs at once on one GPU: one thread and one CUDA stream per run, in one process.

Why: a small model (ResNet-20 at batch 128) leaves most of an H100 idle even inside a CUDA graph: its kernels are
too small to fill the card and each waits for the previous one. Separate processes do not fill the gaps (without
MPS the GPU time-slices between processes: 1.1-1.5x at 6-8 processes, measured). Streams of one process do: the
GPU runs kernels of different streams side by side. Each run replays its own CUDA graphs on its own stream; the
Python work per step is small and releases the GIL inside every CUDA call, so the threads interleave.

``parallel`` worker threads take the runs in order; each builds its Trainer (one build at a time: seeding is
global) and trains it on the worker's stream. A CUDA-graph capture runs alone: the others pause at their next
step until it is done (``graphs.CaptureGate``).
A run that fails does not stop the others; its exception is re-raised after all have finished. Ctrl-C asks
every run to stop. On a CPU, with torch.compile, or with one job the runs simply go one after the other.
"""
from __future__ import annotations

import contextlib
import threading

import torch

from .config import TrainConfig
from .engine import Trainer, resolve_device
from .graphs import GATE


def can_overlap(config: TrainConfig) -> bool:
    """Whether runs of this config can share a GPU through streams (CUDA, and no torch.compile: dynamo is not
    thread-safe)."""
    return resolve_device(config.device).type == "cuda" and not config.compile


#: Trainer construction seeds the global RNGs: one build at a time keeps every run's initialisation deterministic
BUILD_LOCK = threading.Lock()


def run_concurrently(configs: list[TrainConfig], parallel: int, on_done=None, callbacks=(),
                     threads: bool | None = None) -> list[dict]:
    """Train every config, ``parallel`` at a time, each on its own CUDA stream; returns the Histories as dicts,
    in order. ``on_done(index, history_dict)`` is called (from the run's thread) as each run ends; ``callbacks``
    subscribe to every run's events (from the runs' threads: they must be thread-safe). ``threads`` forces the
    thread pool on or off (default: on where ``can_overlap``; on a CPU it only serves tests of the pool itself).

    Results equal a sequential run's up to the float non-determinism of cuDNN autotuning (the streams share
    nothing but the GPU).
    """
    results: list[dict | None] = [None] * len(configs)
    if threads is None:
        threads = all(can_overlap(c) for c in configs)
    if parallel <= 1 or len(configs) <= 1 or not threads:
        for i, cfg in enumerate(configs):
            results[i] = Trainer(cfg, callbacks).run().to_dict()
            if on_done:
                on_done(i, results[i])
        return results
    pending = list(range(len(configs)))
    queue_lock = threading.Lock()
    running: dict[int, Trainer] = {}
    stopping = threading.Event()
    errors: list[tuple[int, BaseException]] = []

    device = resolve_device(configs[0].device)

    def worker() -> None:
        stream = torch.cuda.Stream(device=device) if device.type == "cuda" else None
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            while not stopping.is_set():
                with queue_lock:
                    if not pending:
                        return
                    i = pending.pop(0)
                try:
                    with BUILD_LOCK, GATE.shared():
                        trainer = Trainer(configs[i], callbacks)
                    running[i] = trainer
                    if stopping.is_set():
                        trainer.request_stop()
                    results[i] = trainer.run().to_dict()
                    if stream is not None:
                        with GATE.shared():
                            stream.synchronize()
                    running.pop(i, None)
                    if on_done:
                        on_done(i, results[i])
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append((i, e))

    pool = [threading.Thread(target=worker, daemon=True, name=f"sparseopt-run-{k}")
            for k in range(min(parallel, len(configs)))]
    for th in pool:
        th.start()
    try:
        for th in pool:
            while th.is_alive():
                th.join(timeout=0.5)
    except KeyboardInterrupt:
        stopping.set()
        for t in list(running.values()):
            t.request_stop()
        for th in pool:
            th.join()
        raise
    if errors:
        i, e = sorted(errors, key=lambda x: x[0])[0]
        raise RuntimeError(f"run {i + 1} of {len(configs)} failed: {e}") from e
    return results
