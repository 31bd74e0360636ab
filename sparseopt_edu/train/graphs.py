"""The training step as CUDA graphs (CUDA only; never touched on CPU): captures a function, not a trainer.

ResNet-20 at batch 128 is bound by kernel launches (ENV.md, "GPU, measured"): replaying one captured graph for
forward, backward, SparseOpt's mask x scale multiply and the optimizer step removes that overhead.
:class:`CapturedStep` wraps the one step function of ``step.py`` (``train_step(x, y, update)``) and a batch
builder (``DeviceLoader.batch_at``, which gathers, crops, flips and normalises from a device position tensor):
- Warm-up: the first ``WARMUP`` calls run eagerly on a side stream (they are real training steps; they also
  create the optimizer state and, with ``compile``, compile the model).
- Capture: at the first non-update step after warm-up; the capture only records, so the graph is replayed once
  right after for that step. Per step the loop then writes the LR and the position (two fills) and replays;
  the batch is built and the loss and correct count are added to the device sums inside the graph.
- Update steps replay a second graph, captured right after the first (when updates lie ahead): the same step
  with ``update=True``, which also copies the raw dense gradient into one flat buffer. The call returns that
  static buffer; the loop hands it to the DST and the skew metrics. The topology update runs outside both graphs
  and changes masks, their scale tensors, weights and optimizer state in place, so the graphs stay valid. After
  the capture every step replays one of the two graphs.
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


class CapturedStep:
    """``step(position, update=..., updates_ahead=...)``: run ``train_step`` on batch ``position`` of the loader's
    current epoch, eagerly while warming up, then by replaying its captured graphs; returns what ``train_step``
    returns (the raw gradient copy on update steps, else None)."""

    def __init__(self, train_step, batch_at, device: torch.device):
        if torch.device(device).type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.train_step, self.batch_at = train_step, batch_at
        self.graph = None
        self.update_graph = None
        self.update_raw = None  # the update graph's static copy of the raw gradient
        self.eager_steps = 0
        self.position = torch.zeros((), dtype=torch.long, device=device)  # the batch the graphs build
        self.stream = side_stream(device)

    def _recorded(self, update: bool):
        return self.train_step(*self.batch_at(self.position), update=update)

    def _eager(self, position: int, update: bool):
        """A warm-up or pre-capture step, eagerly on a side stream (as torch.cuda.graphs recommends)."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            raw = self.train_step(*self.batch_at(position), update=update)
        torch.cuda.current_stream().wait_stream(self.stream)
        self.eager_steps += 1
        return raw

    def _capture(self, update: bool):
        graph = torch.cuda.CUDAGraph()
        with _capturing(graph):
            raw = self._recorded(update)
        return graph, raw

    def __call__(self, position: int, *, update: bool, updates_ahead: bool):
        if self.eager_steps < WARMUP or (update and self.graph is None):
            return self._eager(position, update)
        if self.graph is None:  # records only: the replay below runs this step
            self.graph, _ = self._capture(False)
            if updates_ahead:
                self.update_graph, self.update_raw = self._capture(True)
        self.position.fill_(position)
        if not update:
            self.graph.replay()
            return None
        if self.update_graph is None:
            self.update_graph, self.update_raw = self._capture(True)
        self.update_graph.replay()
        return self.update_raw
