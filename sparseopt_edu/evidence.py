"""The paper's experiment on real data: which runs make notebook 05's evidence, and how their results load.

Why a module: the runs take a GPU (ResNet-20, all 60,000 Fashion-MNIST images per epoch), so they are made once
with ``tools/run_evidence.py`` and committed as small JSON files under ``results/fashion_mnist/``; the notebook,
the README and the tests read them back through :func:`load_rows` and compare the arms with the same library
functions (``train.grid.paired_comparisons``). A group is what one GPU call runs (about 7-9 minutes on an H200
with 10-12 runs interleaved). The recipe is ``reproduce table2``'s (docs/method.md section 3) on real
Fashion-MNIST instead of CIFAR-100.
"""
from __future__ import annotations

import glob
import json
import os

from .train.config import TrainConfig

RESULTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "fashion_mnist")
EPOCHS = 30
SEEDS = 5

#: group -> list of (variant, sparsities, number of seeds); GROUP_EPOCHS overrides EPOCHS for a group
GROUPS: dict[str, list[tuple[str, tuple[float, ...], int]]] = {
    # the main race: RigL with and without SparseOpt, the paper's Table 2 sparsities and 99%
    "rigl-90-95": [("rigl", (0.90, 0.95), SEEDS), ("rigl+sparseopt", (0.90, 0.95), SEEDS)],
    "rigl-97-99": [("rigl", (0.97, 0.99), SEEDS), ("rigl+sparseopt", (0.97, 0.99), SEEDS)],
    # the paper's ITOP ablation: growth from the corrected gradient (its raw arm is rigl+sparseopt above)
    "itop": [("rigl+sparseopt:grow_from=corrected", (0.90, 0.95, 0.97), SEEDS)],
    # our scope experiment (SparseOpt scaling the whole update; its arms are rigl and rigl+sparseopt), and SET
    "scope-set": [("rigl+sparseopt:scope=update", (0.95,), SEEDS), ("set", (0.95,), SEEDS),
                  ("set+sparseopt", (0.95,), SEEDS)],
    # a longer horizon at 97%
    "long-97": [("rigl", (0.97,), 3), ("rigl+sparseopt", (0.97,), 3)],
}
GROUP_EPOCHS = {"long-97": 100}


def base_config(epochs: int = EPOCHS, *, n_train: int | None = None, n_test: int | None = None,
                device: str = "auto", data_root: str = "data") -> TrainConfig:
    """``reproduce table2``'s recipe on Fashion-MNIST: ResNet-20 (1-channel stem), ERK, RigL dT=100, alpha 0.3,
    T_end 0.75, SGD 0.1 Nesterov, cosine, wd 5e-4, batch 128, crop + flip, test set evaluated every epoch."""
    from .paper import table2_recipe

    return table2_recipe("fashion_mnist", epochs, n_train=n_train, n_test=n_test, device=device, data_root=data_root)


def jobs(group: str, base: TrainConfig, seeds: int | None = None):
    """The group's runs as grid Jobs (``seeds`` overrides every entry's seed count, e.g. for a small live run)."""
    from .train import grid

    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}: choose from {', '.join(GROUPS)}")
    out = []
    for variant, sparsities, n in GROUPS[group]:
        out += grid.plan(base, [variant], sparsities, range(seeds or n))
    return out


def load_rows(folder: str = RESULTS_DIR) -> list[dict]:
    """Every run row of every results JSON in ``folder`` (one file per group), in file order."""
    rows = []
    paths = sorted(glob.glob(os.path.join(folder, "*.json")))
    if not paths:
        raise FileNotFoundError(f"no results JSON in {folder}: make them on a GPU with tools/run_evidence.py "
                                "(see its docstring), or run the small live version in notebook 05")
    for path in paths:
        with open(path) as fh:
            doc = json.load(fh)
        rows += doc["rows"]
    return rows


def load_meta(folder: str = RESULTS_DIR) -> list[dict]:
    """Each file's meta (group, device, wall time, command, versions)."""
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as fh:
            out.append({"file": os.path.basename(path), **json.load(fh).get("meta", {})})
    return out
