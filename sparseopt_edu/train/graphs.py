"""The whole training step as one CUDA graph (CUDA only; never touched on CPU).

ResNet-20 at batch 128 is bound by kernel launches (ENV.md, "GPU, measured"): replaying one captured graph for
forward, backward, SparseOpt's mask x scale multiply and the optimizer step removes that overhead.
- Warm-up: the first ``WARMUP`` steps run eagerly on a side stream (they are real training steps; they also
  create the optimizer state and, with ``compile``, compile the model).
- The batch is built inside the graph (``DeviceLoader.batch_at`` from a device position tensor: gather, crop,
  flip, normalise), and the loss and correct count are added to the trainer's device sums there too: per step
  the loop writes the LR and the position (two fills) and replays. Nothing of a step is cloned or copied.
- Capture: at the first non-update step after warm-up; the capture only records, so the graph is replayed once
  right after for that step.
- Update steps (``dst.schedule.is_update(t + 1)``) replay a second graph, captured right after the first: the
  same step plus a copy of the raw dense gradient into one flat buffer (a step pre-hook runs during capture, so
  the copy is recorded; on replay the loop hands that static buffer to the DST). The skew metrics
  are computed from that copy after the replay. The topology update itself runs outside both graphs; masks,
  their cached scale tensors, weights and optimizer state are all changed in place, so the graphs stay valid.
  After the capture every step replays one of the two graphs (no eager step could move ``.grad``).
- The DST runs with ``defer_checks`` on CUDA: an update reads nothing back, so the loop never waits for the GPU
  between epoch ends and logging steps (``benchmarks/sync_check.py`` lists where it does).
- The LR lives in a device tensor (fused SGD, capturable Adam/AdamW): the loop writes it with ``fill_``.
"""
from __future__ import annotations

import contextlib
import gc

import torch

WARMUP = 3


_SIDE_STREAMS: dict = {}


def side_stream(device: torch.device) -> torch.cuda.Stream:
    """One warm-up stream per device for every run of the process.

    torch hands out streams round-robin from a pool of 32: a new stream per run came back as another run's stream
    after 16 runs interleaved on one GPU, and that run's capture failed (H200, measured). Runs reuse this one.
    """
    key = torch.device(device).index if torch.device(device).index is not None else torch.cuda.current_device()
    if key not in _SIDE_STREAMS:
        _SIDE_STREAMS[key] = torch.cuda.Stream(device=key)
    return _SIDE_STREAMS[key]


@contextlib.contextmanager
def _capturing(graph: torch.cuda.CUDAGraph):
    """torch.cuda.graph, with Python's garbage collector paused: a collection during the capture could free an
    ended run's graph or events (CUDA calls that invalidate a capture)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        with torch.cuda.graph(graph):
            yield
    finally:
        if enabled:
            gc.enable()


class GraphStep:
    def __init__(self, trainer):
        if trainer.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.trainer = trainer
        self.loader = trainer.train_loader
        self.graph = None
        self.eager_steps = 0
        self.update_graph = None
        self.update_flat = None  # the update graph's flat copy of the raw gradient
        self.position = torch.zeros((), dtype=torch.long, device=trainer.device)  # the batch the graphs build
        self.stream = side_stream(trainer.device)

    def _recorded_step(self):
        """What both graphs record: build the batch at ``position``, the step, add to the loss/accuracy sums."""
        t = self.trainer
        x, y = self.loader.batch_at(self.position)
        loss, correct, _ = t._core_step(x, y, snapshot=False)
        t._accumulate(loss, correct)

    def _eager(self, position: int, snapshot: bool):
        """A warm-up or pre-capture step, eagerly on a side stream (as torch.cuda.graphs recommends)."""
        t = self.trainer
        t.optimizer.zero_grad(set_to_none=True)
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            x, y = self.loader.batch_at(position)
            loss, correct, skew = t._core_step(x, y, snapshot)
            t._accumulate(loss, correct)
        torch.cuda.current_stream().wait_stream(self.stream)
        self.eager_steps += 1
        return skew

    def _capture(self):
        t = self.trainer
        t.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with _capturing(graph):
            self._recorded_step()
        self.graph = graph
        if t.dst is not None and t.dst.t + 1 < t.dst.schedule.t_end:  # updates ahead: capture theirs now too
            self._capture_update()

    def _capture_update(self):
        """The update-step graph: zero the grads in place, then the step with a copy of the raw gradient.

        Captured right after the first graph, at a step that is not an update step (RigL's own snapshot hook does
        not fire), so a hook records the copy for every method (SET and Static use it for the skew metrics).
        """
        t = self.trainer
        graph = torch.cuda.CUDAGraph()
        hook = t.optimizer.register_step_pre_hook(lambda opt, args, kwargs: t.dst.snapshot_gradients())
        try:
            with _capturing(graph):
                t.optimizer.zero_grad(set_to_none=False)  # .grad already lives at the first graph's addresses
                self._recorded_step()
        finally:
            hook.remove()
        self.update_graph, self.update_flat = graph, t.dst._grad_flat
        t.dst._clear_snapshot()  # recorded, not run: no real snapshot exists yet
        t.dst._grads_step = -1

    def step(self, position: int, *, eager: bool, snapshot: bool):
        """Train on batch ``position`` of the loader's current epoch; returns the skew metrics (update steps with
        ``snapshot``) or None. The loss and correct count go straight into the trainer's device sums."""
        if self.eager_steps < WARMUP or (eager and self.graph is None):
            return self._eager(position, snapshot)
        if self.graph is None:
            self._capture()  # records only: the replay below runs this step
        self.position.fill_(position)
        if not eager:
            self.graph.replay()
            return None
        dst = self.trainer.dst
        if self.update_graph is None:
            self._capture_update()
        self.update_graph.replay()
        dst.set_gradient_snapshot(self.update_flat, dst.t + 1)
        return self.trainer._skew_snapshot(self.update_flat) if snapshot else None
