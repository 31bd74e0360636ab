"""Generated datasets: procedural shapes (a learnable CIFAR-100-shaped stand-in) and uniform noise (benchmarks).

Why generated data: CIFAR cannot be downloaded everywhere, and a course needs a learnable stand-in that is fast
to make and identical for the same arguments. Every draw comes from a seeded generator of its own stream.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .images import ImageData
from .loaders import gather_crop


def _gen(seed: int, stream: int) -> torch.Generator:
    # Independent streams per purpose, so the test set does not depend on n_train.
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def _smooth_field(n: int, c: int, size: int, cells: int, g: torch.Generator) -> torch.Tensor:
    """Smooth random fields: a cells x cells normal grid, upsampled bilinearly to size x size."""
    z = torch.randn(n, c, cells, cells, generator=g)
    return F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)


def _cosine_basis(size: int, k: int) -> torch.Tensor:
    """k*k low-frequency 2D cosine patterns (unit RMS), flattened: k*k x size*size."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    f = torch.cos(math.pi * torch.arange(k, dtype=torch.float32).view(k, 1) * t)  # k x size
    b = (f.view(k, 1, size, 1) * f.view(1, k, 1, size)).reshape(k * k, size * size)
    return b / b.square().mean(1, keepdim=True).sqrt()


def _shape_masks(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Soft masks of random discs, squares and stripes (n x 1 x size x size), values in 0..1."""
    coord = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = coord.view(1, -1, 1), coord.view(1, 1, -1)
    cy, cx = (torch.rand(2, n, 1, 1, generator=g) * 0.5 + 0.25) * size
    r = (torch.rand(n, 1, 1, generator=g) * 0.2 + 0.15) * size
    kind = torch.randint(0, 3, (n, 1, 1), generator=g)
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() - r
    square = torch.maximum((yy - cy).abs(), (xx - cx).abs()) - r
    angle = torch.rand(n, 1, 1, generator=g) * math.pi
    period = torch.rand(n, 1, 1, generator=g) * 6 + 4
    stripes = torch.sin((xx * torch.cos(angle) + yy * torch.sin(angle)) * (2 * math.pi / period)) * 2
    sdf = torch.where(kind == 0, disc, torch.where(kind == 1, square, stripes))
    return torch.sigmoid(-sdf * 2).unsqueeze(1)


def shapes(n_train: int = 50000, n_test: int = 10000, num_classes: int = 100, size: int = 32,
           difficulty: float = 0.5, seed: int = 0, chunk: int = 5000) -> ImageData:
    """Procedural colour images, 3 x size x size, ``num_classes`` balanced classes; CIFAR-100-shaped by default.

    Why: CIFAR cannot be downloaded here, and a course needs a learnable stand-in that is fast to make.
    Each class has a seeded prototype: a smooth random colour field plus a coloured disc, square or stripe
    pattern. A sample is its prototype translated by up to 8*difficulty pixels, with per-channel gain/offset
    jitter, a per-sample smooth distractor field (random low-frequency cosines) and pixel noise, all growing with ``difficulty`` in [0, 1].
    At 0.5 a nearest-class-mean classifier on raw pixels is far above chance but far from perfect (about 37%
    with 100 classes, see tests); a 3-conv BN CNN reached 24/45/64/76% test accuracy after 1/2/3/4 epochs on
    10,000 training images (CPU, no augmentation), so it is learnable and leaves room for differences.
    Vectorised and chunked; the same arguments give identical data.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if num_classes < 2 or n_train < 0 or n_test < 0:
        raise ValueError(f"need num_classes >= 2 and non-negative sizes, got {num_classes}, {n_train}, {n_test}")
    shift = int(round(8 * difficulty))
    big = size + 2 * shift
    g = _gen(seed, 0)
    field = _smooth_field(num_classes, 3, big, 4, g) * 0.18
    mask = _shape_masks(num_classes, big, g)
    base = torch.rand(num_classes, 3, 1, 1, generator=g) * 0.6 + 0.2
    colour = torch.rand(num_classes, 3, 1, 1, generator=g)
    protos = ((base + field) * (1 - mask) + colour * mask).clamp(0, 1)  # K x 3 x big x big

    basis = _cosine_basis(size, 4)  # 16 x size*size smooth patterns for the per-sample distractor field

    def make(n: int, stream: int):
        gs = _gen(seed, stream)
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=gs)]
        xs = torch.empty(n, 3, size, size, dtype=torch.uint8)
        for i in range(0, n, chunk):
            yb = y[i : i + chunk]
            m = yb.shape[0]
            top, left = torch.randint(0, 2 * shift + 1, (2, m), generator=gs)
            x = gather_crop(protos[yb], top, left, size, size)
            gain = 1 + difficulty * 0.5 * torch.randn(m, 3, 1, 1, generator=gs)
            offset = difficulty * 0.3 * torch.randn(m, 3, 1, 1, generator=gs)
            x.mul_(gain).add_(offset)
            coef = torch.randn(m * 3, basis.shape[0], generator=gs) * (difficulty * 0.2 / basis.shape[0] ** 0.5)
            x.add_((coef @ basis).view(m, 3, size, size))
            # uniform pixel noise with std 0.2 * difficulty (uniform: cheaper to draw than normal)
            noise = torch.rand(m, 3, size, size, generator=gs).sub_(0.5)
            x.add_(noise, alpha=difficulty * 0.2 * math.sqrt(12))
            xs[i : i + m] = x.mul_(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
        return xs, y

    train_x, train_y = make(n_train, 1)
    test_x, test_y = make(n_test, 2)
    return ImageData.from_splits("shapes", train_x, train_y, test_x, test_y, num_classes)


def fake(n: int = 50000, shape=(3, 32, 32), num_classes: int = 100, seed: int = 0, n_test: int | None = None
         ) -> ImageData:
    """Uniform random uint8 images and labels (like torchvision's FakeData): for throughput benchmarks only."""
    g = _gen(seed, 3)
    n_test = max(1, n // 5) if n_test is None else n_test
    x = torch.randint(0, 256, (n + n_test, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, num_classes, (n + n_test,), generator=g)
    half = (0.5,) * shape[0]
    return ImageData("fake", x[:n], y[:n], x[n:], y[n:], num_classes, half, (0.2887,) * shape[0])

