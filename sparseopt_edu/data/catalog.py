"""Datasets by name: the names a config or the CLI may use (``DATASETS``), and :func:`load_dataset`."""
from __future__ import annotations

from .images import ImageData
from .procedural import fake, shapes
from .real import cifar10, cifar100, digits, fashion_mnist, mnist, mnist_subset

DATASETS = ("digits", "mnist_subset", "shapes", "cifar10", "cifar100", "mnist", "fashion_mnist", "fake")


def load_dataset(name: str, *, root="data", download: bool = False, **kwargs) -> ImageData:
    """Load a dataset by name (see ``DATASETS``); ``root``/``download`` matter only for torchvision ones."""
    if name in ("cifar10", "cifar100", "mnist", "fashion_mnist"):
        fn = {"cifar10": cifar10, "cifar100": cifar100, "mnist": mnist, "fashion_mnist": fashion_mnist}[name]
        return fn(root=root, download=download, **kwargs)
    local = {"digits": digits, "mnist_subset": mnist_subset, "shapes": shapes, "fake": fake}
    if name not in local:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")
    return local[name](**kwargs)

