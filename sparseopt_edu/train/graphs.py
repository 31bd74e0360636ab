"""The whole training step as one CUDA graph (CUDA only; never touched on CPU).

ResNet-20 at batch 128 is bound by kernel launches (ENV.md, "GPU, measured"): replaying one captured graph for
forward, backward, SparseOpt's mask x scale multiply and the optimizer step removes that overhead.
- Warm-up: the first ``WARMUP`` steps run eagerly on a side stream (they are real training steps; they also
  create the optimizer state and, with ``compile``, compile the model).
- Capture: at the first non-update step after warm-up, with the real batch copied into static input tensors;
  the capture only records, so the graph is replayed once right after for that step.
- Update steps (``dst.schedule.is_update(t + 1)``) replay a second graph, captured right after the first: the
  same step plus a copy of the raw dense gradient into one flat buffer (a step pre-hook runs during capture, so
  the copy is recorded; on replay the loop hands that static buffer to the DST). The skew metrics
  are computed from that copy after the replay. The topology update itself runs outside both graphs; masks,
  their cached scale tensors, weights and optimizer state are all changed in place, so the graphs stay valid.
  Eager steps zero the gradients in place (``set_to_none=False``) so ``.grad`` keeps the graph's addresses.
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
        self.graph = None
        self.eager_steps = 0
        self.static = None  # (x, y, loss, correct)
        self.update_graph = None
        self.update_static = None  # (loss, correct, the raw gradient's flat copy)
        self.stream = side_stream(trainer.device)

    def _eager(self, x, y, snapshot):
        t = self.trainer
        t.optimizer.zero_grad(set_to_none=self.graph is None)
        if self.graph is None:
            # warm-up / pre-capture steps on a side stream, as torch.cuda.graphs recommends
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                out = t._core_step(x, y, snapshot)
            torch.cuda.current_stream().wait_stream(self.stream)
        else:
            out = t._core_step(x, y, snapshot)
        self.eager_steps += 1
        return out

    def _capture(self, x, y):
        t = self.trainer
        sx, sy = x.clone(), y.clone()
        t.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with _capturing(graph):
            loss, correct, _ = t._core_step(sx, sy, snapshot=False)
        self.graph, self.static = graph, (sx, sy, loss, correct)
        if t.dst is not None and t.dst.t + 1 < t.dst.schedule.t_end:  # updates ahead: capture theirs now too
            self._capture_update()

    def _capture_update(self):
        """The update-step graph: zero the grads in place, then the step with a copy of the raw gradient.

        Captured right after the first graph, at a step that is not an update step (RigL's own snapshot hook does
        not fire), so a hook records the copy for every method (SET and Static use it for the skew metrics).
        """
        t = self.trainer
        sx, sy = self.static[0], self.static[1]
        graph = torch.cuda.CUDAGraph()
        hook = t.optimizer.register_step_pre_hook(lambda opt, args, kwargs: t.dst.snapshot_gradients())
        try:
            with _capturing(graph):
                t.optimizer.zero_grad(set_to_none=False)  # .grad already lives at the first graph's addresses
                loss, correct, _ = t._core_step(sx, sy, snapshot=False)
        finally:
            hook.remove()
        self.update_graph = graph
        self.update_static = (loss, correct, t.dst._grad_flat)
        t.dst._clear_snapshot()  # recorded, not run: no real snapshot exists yet
        t.dst._grads_step = -1

    def step(self, x, y, *, eager: bool, snapshot: bool):
        if self.eager_steps < WARMUP or (eager and self.graph is None):
            return self._eager(x, y, snapshot)
        if self.graph is None:
            self._capture(x, y)
        sx, sy, loss, correct = self.static
        sx.copy_(x, non_blocking=True)
        sy.copy_(y, non_blocking=True)
        if not eager:
            self.graph.replay()
            # the static outputs are overwritten by the next replay: hand out copies
            return loss.clone(), correct.clone(), None
        dst = self.trainer.dst
        if self.update_graph is None:
            self._capture_update()
        self.update_graph.replay()
        u_loss, u_correct, flat = self.update_static
        dst.set_gradient_snapshot(flat, dst.t + 1)
        skew = self.trainer._skew_snapshot(dst._grads) if snapshot else None
        return u_loss.clone(), u_correct.clone(), skew
