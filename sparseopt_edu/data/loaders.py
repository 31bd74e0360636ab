"""How batches are made: a loader that keeps the uint8 set on the device, and the standard torch loop.

Why :class:`DeviceLoader`: a ResNet-20 step is bound by launch overhead (ENV.md, "GPU, measured"). Keeping the
whole uint8 set on the device and doing shuffle, crop, flip and normalisation as a few batched kernels removes
the worker processes and host copies of the standard loop (:func:`torch_dataloader`, kept as the baseline).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .images import ImageData


def gather_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int,
                flip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample crops of size h x w at (top, left) from a padded batch, in one advanced-indexing gather.

    ``flip`` (bool per sample) mirrors the crop horizontally by reversing its column indices, so the flip
    costs nothing extra. No Python loop over images.
    """
    n, c = x.shape[:2]
    dev = x.device
    rows = top.view(n, 1) + torch.arange(h, device=dev)  # n x h
    cols_fwd = torch.arange(w, device=dev)
    if flip is not None:
        cols = torch.where(flip.view(n, 1), cols_fwd.flip(0), cols_fwd) + left.view(n, 1)  # n x w
    else:
        cols = cols_fwd + left.view(n, 1)
    b = torch.arange(n, device=dev).view(n, 1, 1, 1)
    ch = torch.arange(c, device=dev).view(1, c, 1, 1)
    return x[b, ch, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


# ----------------------------------------------------------------------------------------------------------------
# The device-resident loader

class DeviceLoader:
    """Batches from a uint8 image set that lives on ``device``: shuffle, crop, flip and normalise on the device.

    Each batch is a handful of kernels: one gather of the batch, one zero-pad, one gather that does the random
    crop (padding 4) and the per-sample horizontal flip together, and one multiply-add that converts to float
    and normalises ((x/255 - mean)/std folded into x*a + b). No host sync per batch (no .item(), no .cpu()).

    Reproducibility: epoch e's permutation and all its augmentations (crop offsets, flips) are drawn at the
    start of the epoch from a generator (on ``device``) seeded with (seed, e), so ``set_epoch(e)`` replays epoch
    e and a batch is a pure function of (epoch, position). ``state_dict()`` holds the epoch and the position
    inside it; after ``load_state_dict`` the next iteration continues exactly where the saved loader stopped.
    Iterating continues from the current position; once an epoch is used up, the next iteration starts
    epoch + 1 (so ``epoch`` names the epoch being served or last served).
    Augmentation runs only when ``train and augment``; shuffling defaults to ``train``.

    For CUDA graphs, :meth:`positions` hands out batch positions without building the batches, and
    :meth:`batch_at` builds batch ``position`` from a device tensor, so the whole batch (gather, crop, flip,
    normalise) can be recorded inside the training step's graph. The epoch's tables keep their addresses
    (they are refilled in place), so a captured graph reads each new epoch's draws.
    """

    def __init__(self, data_x: torch.Tensor, y: torch.Tensor, *, batch_size: int, mean, std, device="cpu",
                 train: bool = True, augment: bool = True, seed: int = 0, drop_last: bool = True,
                 shuffle: bool | None = None, padding: int = 4, memory_format=torch.contiguous_format):
        if data_x.dtype != torch.uint8 or data_x.ndim != 4:
            raise ValueError(f"data_x must be uint8 N x C x H x W, got {data_x.dtype} {tuple(data_x.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        c = data_x.shape[1]
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean and std need one value per channel ({c}), got {len(mean)} and {len(std)}")
        self.device = torch.device(device)
        self.x = data_x.to(self.device)  # moved once
        self.y = y.to(self.device, torch.int64)
        self.batch_size, self.drop_last, self.seed, self.padding = batch_size, drop_last, seed, padding
        self.train, self.augment = train, (train and augment)
        self.shuffle = train if shuffle is None else shuffle
        self.memory_format = memory_format
        std_t = torch.as_tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t
        self._offsets = torch.arange(batch_size, device=self.device)  # made here, not during a graph capture
        self.gen = torch.Generator(device=self.device)
        self.epoch, self.position = 0, 0
        self._start_epoch()

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _start_epoch(self):
        """Draw the epoch's permutation, crop offsets and flips, in place (their addresses never change)."""
        self.gen.manual_seed(self.seed * 1_000_003 + self.epoch)
        n, dev, span = self.x.shape[0], self.device, 2 * self.padding + 1
        if not hasattr(self, "_perm"):
            self._perm = torch.arange(n, device=dev)
            if self.augment:
                self._top, self._left = torch.empty(n, dtype=torch.long, device=dev), torch.empty_like(self._perm)
                self._flip = torch.empty(n, dtype=torch.bool, device=dev)
        if self.shuffle:
            torch.randperm(n, generator=self.gen, device=dev, out=self._perm)
        if self.augment:
            self._top.random_(0, span, generator=self.gen)
            self._left.random_(0, span, generator=self.gen)
            self._flip.copy_(torch.rand(n, generator=self.gen, device=dev) < 0.5)

    def set_epoch(self, epoch: int):
        """Start epoch ``epoch`` from its beginning (its shuffle is a function of (seed, epoch) only)."""
        self.epoch, self.position = int(epoch), 0
        self._start_epoch()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict):
        """Continue where the saved loader stopped (older states' extra "rng_state" is not needed: ignored)."""
        self.seed = state["seed"]
        self.set_epoch(state["epoch"])
        self.position = state["position"]

    def _batch(self, sel):
        """The batch at ``sel`` in this epoch's order: a slice (eager) or a tensor of offsets (inside a graph)."""
        idx = self._perm[sel]
        x, y = self.x[idx], self.y[idx]
        if self.augment:
            h, w = x.shape[2:]
            p = self.padding
            x = gather_crop(F.pad(x, (p, p, p, p)), self._top[sel], self._left[sel], h, w, self._flip[sel])
        x = torch.addcmul(self._shift, x.float(), self._scale)  # (x/255 - mean)/std in one op
        if self.memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
        return x, y

    def _slice(self, position: int) -> slice:
        start = position * self.batch_size
        return slice(start, min(start + self.batch_size, self.x.shape[0]))

    def positions(self):
        """Like iterating, but yields batch positions (ints) and builds nothing: see :meth:`batch_at`."""
        if self.position >= len(self):  # the current epoch is used up: the next one starts
            self.set_epoch(self.epoch + 1)
        while self.position < len(self):
            self.position += 1
            yield self.position - 1

    def batch_at(self, position):
        """Batch ``position`` of the current epoch; ``position`` an int, or a 0-d int64 tensor on ``device``.

        With a tensor, nothing is read on the host (no sync): the batch can be built inside a CUDA graph and
        the loop only writes the position into that tensor. A tensor position needs full batches
        (``drop_last=True``).
        """
        if not torch.is_tensor(position):
            return self._batch(self._slice(position))
        if not self.drop_last:
            raise ValueError("batch_at with a tensor position needs drop_last=True (every batch the same size)")
        return self._batch(position * self.batch_size + self._offsets)

    def __iter__(self):
        for position in self.positions():
            yield self.batch_at(position)


# ----------------------------------------------------------------------------------------------------------------
# The standard PyTorch loop (baseline for benchmarks, and a plain CPU path)

class _TensorImages(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def torch_dataloader(data: ImageData, split: str = "train", batch_size: int = 128, workers: int = 2,
                     augment: bool = True) -> torch.utils.data.DataLoader:
    """A standard ``torch.utils.data.DataLoader`` with torchvision transforms, one image at a time in workers.

    RandomCrop(H, padding=4) and RandomHorizontalFlip (train split and ``augment`` only), then float +
    Normalize; shuffled train, pinned memory when CUDA is present. This is the "standard loop" the
    benchmarks compare :class:`DeviceLoader` against.
    """
    from torchvision.transforms import v2

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    train = split == "train"
    x, y = (data.train_x, data.train_y) if train else (data.test_x, data.test_y)
    steps = []
    if train and augment:
        steps += [v2.RandomCrop(data.shape[1:], padding=4), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(data.mean), list(data.std))]
    return torch.utils.data.DataLoader(
        _TensorImages(x, y, v2.Compose(steps)), batch_size=batch_size, shuffle=train, drop_last=train,
        num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)
