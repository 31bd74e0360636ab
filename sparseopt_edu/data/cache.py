"""The one dataset cache: a grid of runs, a notebook's panels and a CLI check on the same data load it once.

Why one cache, holding one dataset: parsing the MNIST subset takes a second or two and CIFAR or Fashion-MNIST
more, so repeated runs must not reload; but two full copies of CIFAR would double the memory of a small
machine, and a course rarely switches datasets. So the last dataset loaded is kept, keyed by (name, absolute
root, options), and loading another replaces it.

Read-only use: what :func:`load_cached` returns is shared by every caller. Loaders copy or gather from it,
:meth:`ImageData.subset` clones, ``distributed.shard`` takes views; nothing may write into its tensors.
"""
from __future__ import annotations

import os

from .catalog import load_dataset
from .images import ImageData

#: (name, abspath(root), repr(sorted(options))) -> ImageData; at most one entry
_CACHE: dict[tuple, ImageData] = {}


def load_cached(name: str, *, root="data", download: bool = False, **kwargs) -> ImageData:
    """:func:`load_dataset`, through the one-dataset cache. The result is shared: read it, never write into it."""
    key = (name, os.path.abspath(root), repr(sorted(kwargs.items())))
    data = _CACHE.get(key)
    if data is None:
        data = load_dataset(name, root=root, download=download, **kwargs)
        _CACHE.clear()  # keep one dataset
        _CACHE[key] = data
    return data


def load_for_run(name: str, *, root="data", download: bool = False, n_train: int | None = None,
                 n_test: int | None = None, seed: int = 0, data_kwargs: dict | None = None) -> ImageData:
    """The data a training run uses: ``TrainConfig``'s dataset fields in, the (sub)set to train and test on out.

    The trainer calls it as ``load_for_run(cfg.dataset, root=cfg.data_root, download=cfg.download,
    n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed, data_kwargs=cfg.data_kwargs)``.

    - Generated sets are made only as large as used: for ``shapes`` and ``fake`` with ``n_train`` given, their
      own size options default to ``n_train`` and ``n_test or max(1, n_train // 5)`` (``data_kwargs`` wins).
    - The full set comes from :func:`load_cached`, so a grid of runs on the same data loads it once.
    - ``n_train``/``n_test`` (None or 0: all; clipped to what the set has) then take a class-balanced subset
      seeded with ``seed``: a fresh copy, never aliasing the cache. Without a subset the shared, cached set is
      returned as is (read-only).

    ``data_kwargs`` is a dict, not ``**kwargs``, because ``shapes`` and ``fake`` have options of their own named
    ``seed``, ``n_train`` and ``n_test``.
    """
    kw = dict(data_kwargs or {})
    if name == "shapes" and n_train is not None:
        kw.setdefault("n_train", n_train)
        kw.setdefault("n_test", n_test or max(1, n_train // 5))
    if name == "fake" and n_train is not None:
        kw.setdefault("n", n_train)
        kw.setdefault("n_test", n_test or max(1, n_train // 5))
    data = load_cached(name, root=root, download=download, **kw)
    n_tr = min(n_train, len(data)) if n_train else len(data)
    n_te = min(n_test, data.test_x.shape[0]) if n_test else data.test_x.shape[0]
    if n_tr < len(data) or n_te < data.test_x.shape[0]:
        data = data.subset(n_tr, n_te, seed=seed)
    return data


def clear_cache() -> None:
    """Forget the cached dataset (tests; or to free its memory)."""
    _CACHE.clear()
