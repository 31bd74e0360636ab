"""The whole training step as one CUDA graph (CUDA only; never touched on CPU).

ResNet-20 at batch 128 is bound by kernel launches (ENV.md, "GPU, measured"): replaying one captured graph for
forward, backward, SparseOpt's mask x scale multiply and the optimizer step removes that overhead.
- Warm-up: the first ``WARMUP`` steps run eagerly on a side stream (they are real training steps; they also
  create the optimizer state and, with ``compile``, compile the model).
- Capture: at the first non-update step after warm-up, with the real batch copied into static input tensors;
  the capture only records, so the graph is replayed once right after for that step.
- Update steps (``dst.schedule.is_update(t + 1)``) run eagerly instead of replaying: RigL's pre-hook then sees
  the raw dense gradient, and the skew snapshot can read it. The topology update itself runs outside the graph;
  masks, their cached scale tensors, weights and optimizer state are all changed in place, so the graph stays
  valid. Eager steps zero the gradients in place (``set_to_none=False``) so ``.grad`` keeps the graph's addresses.
- The LR lives in a device tensor (fused SGD, capturable Adam/AdamW): the loop writes it with ``fill_``.
"""
from __future__ import annotations

import torch

WARMUP = 3


class GraphStep:
    def __init__(self, trainer):
        if trainer.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.trainer = trainer
        self.graph = None
        self.eager_steps = 0
        self.static = None  # (x, y, loss, correct)
        self.stream = torch.cuda.Stream(device=trainer.device)

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
        with torch.cuda.graph(graph):
            loss, correct, _ = t._core_step(sx, sy, snapshot=False)
        self.graph, self.static = graph, (sx, sy, loss, correct)

    def step(self, x, y, *, eager: bool, snapshot: bool):
        if eager or self.eager_steps < WARMUP:
            return self._eager(x, y, snapshot)
        if self.graph is None:
            self._capture(x, y)
        sx, sy, loss, correct = self.static
        sx.copy_(x, non_blocking=True)
        sy.copy_(y, non_blocking=True)
        self.graph.replay()
        # the static outputs are overwritten by the next replay: hand out copies
        return loss.clone(), correct.clone(), None
