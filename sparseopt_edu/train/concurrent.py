"""Several runs at once on one GPU: one CUDA stream per run, their steps interleaved by one Python thread.

Why: a small model (ResNet-20 at batch 128) leaves most of an H100 idle even inside a CUDA graph: its kernels are
too small to fill the card and each waits for the previous one. Separate processes do not fill the gaps (without
MPS the GPU time-slices between processes: 1.1-1.5x at 6-8 processes, measured). Streams of one process do: the
GPU runs kernels of different streams side by side. Each run replays its own CUDA graphs on its own stream; one
step of a run costs the CPU well under a millisecond, so one thread can keep several streams fed.

One thread, not one per run: measured on an H200, threads made CUDA-graph captures fail (another thread's work
invalidated a capture, and a pooled stream of one run turned out to be another run's capture stream, recording
its kernels into the wrong graph). Driven from one thread, a capture happens while nothing else is launched, as
in a single run.

``parallel`` runs are active at a time; the next run starts (is built, then stepped) as soon as one ends. A run
that fails does not stop the others; the first failure is raised once all have ended. Ctrl-C asks every active
run to stop after its current step (each keeps its checkpoint) and is then raised. On a CPU or with
``parallel`` 1 the runs simply go one after the other.
"""
from __future__ import annotations

import contextlib
from collections import deque

import torch

from .config import TrainConfig
from .engine import Trainer, resolve_device


def can_overlap(config: TrainConfig) -> bool:
    """Whether runs of this config can share a GPU through streams: CUDA. With ``compile`` too: the runs of one
    grid build models of one class and shape, so the first run's compiled code serves the others (dynamo inlines
    the modules: no recompile per model instance), and only that run pays the compile."""
    return resolve_device(config.device).type == "cuda"


def run_concurrently(configs: list[TrainConfig], parallel: int, on_done=None, callbacks=(),
                     interleave: bool | None = None, control=None) -> list[dict]:
    """Train every config, ``parallel`` at a time, each on its own CUDA stream; returns the Histories as dicts,
    in order. ``on_done(index, history_dict)`` is called as each run ends; ``callbacks`` subscribe to every
    run's events. ``interleave`` forces interleaving on or off (default: on where ``can_overlap``; on a CPU it
    only serves tests of the driver itself). ``control``: one ``RunControl`` shared by every run.
    """
    results: list[dict | None] = [None] * len(configs)
    if interleave is None:
        interleave = all(can_overlap(c) for c in configs)
    if parallel <= 1 or len(configs) <= 1 or not interleave:
        for i, cfg in enumerate(configs):
            trainer = Trainer(cfg, callbacks, control)
            late = False
            try:
                trainer.run()
            except KeyboardInterrupt:  # out of run() only from its closing writes (held till they were done)
                if trainer.history.reason is None:
                    raise
                late = True
            results[i] = trainer.history.to_dict()
            if on_done:
                on_done(i, results[i])
            if late or results[i]["reason"] == "interrupted":  # Ctrl-C: the run kept its records; start no more
                raise KeyboardInterrupt
        return results

    device = resolve_device(configs[0].device)
    # one stream per slot, made once: streams come round-robin from a pool of 32, so a stream per run would
    # come back to a run still going (see graphs.side_stream)
    slots = [torch.cuda.Stream(device=device) if device.type == "cuda" else None for _ in range(parallel)]
    pending = deque(range(len(configs)))
    active: dict[int, tuple] = {}  # index -> (trainer, its step generator, its stream, its slot)
    errors: list[tuple[int, BaseException]] = []

    def on_stream(stream):
        return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def finish(i: int) -> None:
        trainer, _, stream, _ = active.pop(i)
        if stream is not None:
            stream.synchronize()
        results[i] = trainer.history.to_dict()
        if on_done:
            on_done(i, results[i])

    interrupted = False
    while pending or active:
        try:
            while pending and len(active) < parallel and not interrupted:
                i = pending.popleft()
                busy = {entry[3] for entry in active.values()}
                slot = next(k for k in range(parallel) if k not in busy)
                stream = slots[slot]
                try:
                    with on_stream(stream):
                        trainer = Trainer(configs[i], callbacks, control)
                    active[i] = (trainer, trainer.iterate(), stream, slot)
                except Exception as e:  # noqa: BLE001 - the other runs go on; raised at the end
                    errors.append((i, e))
            for i in list(active):
                trainer, steps, stream, _ = active[i]
                try:
                    with on_stream(stream):
                        next(steps)
                except StopIteration:
                    finish(i)
                    if trainer.history.reason == "interrupted":  # Ctrl-C landed inside this run's step
                        raise KeyboardInterrupt from None
                except Exception as e:  # noqa: BLE001
                    active.pop(i)
                    errors.append((i, e))
        except KeyboardInterrupt:
            interrupted = True
            pending.clear()
            for trainer, *_ in active.values():
                trainer.request_stop()  # each ends after its current step with reason "stopped"
    if interrupted:
        raise KeyboardInterrupt
    if errors:
        i, e = sorted(errors, key=lambda x: x[0])[0]
        raise RuntimeError(f"run {i + 1} of {len(configs)} failed: {e}") from e
    return results
