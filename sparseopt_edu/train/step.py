"""One training step: the function the eager loop calls and the CUDA graph captures (``graphs.py``).

In this order (docs/method.md section 5): zero the gradients in place -> forward and loss (``loss_fn``: bf16
autocast on CUDA, compiled as one with ``compile``) -> backward -> on a topology-update step, a copy of the raw
dense gradient in the masks' flat layout (what RigL grows from and what the skew metrics read, taken before the
optimizer masks it) -> dense runs clip here (sparse runs clip inside SparseOpt) -> ``optimizer.step()`` -> add
the loss and the correct count to the device sums. The topology update itself (``dst.step()``) is the loop's
next line, outside the step: it changes masks, weights and optimizer state in place, so a captured graph stays
valid.

Nothing here reads a value back to the host: a captured step must not, and an eager one then never waits for
the GPU either. Eager steps zero the gradients in place, so every step writes the same buffers. Steps made for
CUDA graphs (``grads_to_none``) set them to None instead: backward then writes each gradient rather than adding it
to zeros, one add kernel per parameter and the zeroing memsets fewer (ResNet-20 RigL + SparseOpt compiled, batch
128, H200: 409 -> 349 kernels and 1.614 -> 1.569 ms per replayed step, ``benchmarks/resnet20_limit.py``). The capture allocates those gradients from the
graph's own memory pool, at addresses every replay writes again; each of the two graphs has its own set, and
``.grad`` outside the step holds the last captured one's, so nothing outside the step reads ``.grad`` under CUDA
graphs (the DST and the skew metrics read the step's raw copy).
"""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F


class StepSums:
    """The device tensors steps add into, in place (a captured graph adds into these very tensors): the epoch's
    loss and correct count, and the logging window's loss."""

    def __init__(self, device):
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.window_loss = torch.zeros((), device=device)

    def add(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        self.loss.add_(loss)
        self.correct.add_(correct)
        self.window_loss.add_(loss)

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss.cpu(), "correct": self.correct.cpu(), "win_loss": self.window_loss.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.loss.copy_(state["loss_sum"])  # in place: a captured graph adds into these tensors
        self.correct.copy_(state["correct"])
        self.window_loss.copy_(state["win_loss"])


class LoopCounts:
    """Host-side counters of the epoch and of the logging window (no device tensor: free to read)."""

    KEYS = ("seen", "batches", "epoch_time", "win_n", "win_images")

    def __init__(self):
        self.reset_epoch()
        self.reset_window()

    def reset_epoch(self) -> None:
        self.seen, self.batches, self.epoch_time = 0, 0, 0.0

    def reset_window(self) -> None:
        self.win_n, self.win_images, self.win_t0 = 0, 0, time.perf_counter()

    def add(self, n: int) -> None:
        self.seen += n
        self.batches += 1
        self.win_n += 1
        self.win_images += n

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.KEYS}

    def load_state_dict(self, state: dict) -> None:
        for k in self.KEYS:
            setattr(self, k, state[k])
        self.win_t0 = time.perf_counter()


def autocast(amp: bool):
    """bf16 autocast on CUDA when ``amp``; its weight cache off (required under CUDA-graph capture)."""
    if amp:
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def make_loss_fn(net, *, amp: bool, label_smoothing: float = 0.0):
    """``loss_fn(x, y) -> (loss, correct count)``, both on the device: the training forward."""
    def loss_fn(x, y):
        with autocast(amp):
            out = net(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=label_smoothing)
        return loss, (out.detach().argmax(1) == y).sum()

    return loss_fn


def make_train_step(loss_fn, optimizer, sums: StepSums, *, gradient_copy=None, clip_params=None,
                    max_grad_norm: float | None = None, grads_to_none: bool = False):
    """The training step ``train_step(x, y, update=False) -> raw gradient copy or None``.

    ``gradient_copy()``: the raw dense gradient of the masked layers in flat layout (None for dense runs); taken
    only when ``update`` is true. ``clip_params`` / ``max_grad_norm``: gradient clipping for dense runs.
    ``grads_to_none``: gradients set to None before backward (for a step CUDA graphs capture; see above).
    """
    def train_step(x, y, update: bool = False):
        optimizer.zero_grad(set_to_none=grads_to_none)
        loss, correct = loss_fn(x, y)
        loss.backward()
        raw = gradient_copy() if update and gradient_copy is not None else None
        if max_grad_norm is not None and clip_params is not None:
            torch.nn.utils.clip_grad_norm_(clip_params, max_grad_norm, foreach=True)
        optimizer.step()
        sums.add(loss.detach(), correct)
        return raw

    return train_step
