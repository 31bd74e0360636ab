"""The one container every dataset becomes: :class:`ImageData`, uint8 images and int64 labels in two splits.

Why one format: every dataset (real digits, the real MNIST subset, procedural shapes, CIFAR, fake) becomes an
:class:`ImageData` of uint8 N x C x H x W images and int64 labels, so the models, the trainer and the notebooks
never care where the pixels came from.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .loaders import DeviceLoader


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in 0..1 units (chunked: no full float copy of the set)."""
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        xb = x[i : i + chunk].to(torch.float64).div_(255.0)
        s += xb.sum(dim=(0, 2, 3))
        s2 += xb.square_().sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


@dataclass(repr=False)
class ImageData:
    """A dataset split into train and test: uint8 images N x C x H x W on the CPU, int64 labels.

    ``mean``/``std`` are per-channel, in 0..1 units, computed on the training images (used to normalise:
    (x/255 - mean)/std). ``len(data)`` is the number of training images.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple
    std: tuple

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"{split}_x must be uint8 N x C x H x W, got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{split}_y must be int64 of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train_x.shape[1:])

    def __len__(self) -> int:
        return self.train_x.shape[0]

    def __repr__(self) -> str:
        c, h, w = self.shape
        return (f"ImageData({self.name!r}, train={len(self)}, test={self.test_x.shape[0]}, shape={c}x{h}x{w}, "
                f"classes={self.num_classes})")

    @classmethod
    def from_splits(cls, name: str, train_x, train_y, test_x, test_y, num_classes: int) -> ImageData:
        """The container for freshly read or generated splits: mean/std measured on ``train_x``."""
        mean, std = channel_stats(train_x)
        return cls(name, train_x.contiguous(), train_y.long(), test_x.contiguous(), test_y.long(), num_classes,
                   mean, std)

    def subset(self, n_train: int, n_test: int | None = None, seed: int = 0) -> ImageData:
        """A smaller, class-balanced random subset (fast mode). mean/std are kept from the full set.

        Balanced: samples are taken round-robin over classes in a seeded random order, so every class gets
        n/num_classes samples as far as it has them.
        """
        g = torch.Generator().manual_seed(seed)
        n_test = self.test_x.shape[0] if n_test is None else n_test
        tr = _balanced_pick(self.train_y, n_train, g)
        te = _balanced_pick(self.test_y, n_test, g)
        return ImageData(self.name, self.train_x[tr].clone(), self.train_y[tr].clone(), self.test_x[te].clone(),
                         self.test_y[te].clone(), self.num_classes, self.mean, self.std)

    def loader(self, split: str = "train", batch_size: int = 128, device="cpu", augment: bool | None = None,
               seed: int = 0, **kw) -> DeviceLoader:
        """A :class:`DeviceLoader` over one split.

        ``augment=None`` means: crop (padding 4) + horizontal flip for the train split of 32x32 images with 3
        channels (CIFAR-like) and of Fashion-MNIST (the Table 2 recipe; a mirrored shirt is still a shirt), nothing
        otherwise (flipping digits would change their meaning). The train split is shuffled and drops
        its last partial batch; the test split keeps its order and every sample.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        train = split == "train"
        if augment is None:
            augment = train and (self.shape == (3, 32, 32) or self.name == "fashion_mnist")
        x, y = (self.train_x, self.train_y) if train else (self.test_x, self.test_y)
        kw.setdefault("drop_last", train)
        return DeviceLoader(x, y, batch_size=batch_size, mean=self.mean, std=self.std, device=device, train=train,
                            augment=augment, seed=seed, **kw)


def _balanced_pick(y: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    if not 0 <= n <= y.shape[0]:
        raise ValueError(f"subset size must be in [0, {y.shape[0]}], got {n}")
    perm = torch.randperm(y.shape[0], generator=g)
    yp = y[perm]
    order = torch.argsort(yp, stable=True)  # grouped by class, random within class
    ys = yp[order]
    counts = torch.bincount(ys)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(ys.shape[0]) - starts[ys]  # position within its class
    pick = order[torch.argsort(rank, stable=True)[:n]]
    return perm[pick].sort().values

