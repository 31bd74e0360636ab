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


def select(rows: list[dict], **fields) -> list[dict]:
    """The rows whose fields equal ``fields`` (e.g. ``variant="rigl", sparsity=0.95, epochs=30``)."""
    return [r for r in rows if all(r.get(k) == v for k, v in fields.items())]


def as_histories(rows: list[dict]) -> list[dict]:
    """Rows as History-like dicts (``epoch``, ``test_acc``, ``train_loss``) for ``viz.convergence_curves``."""
    return [{"epoch": list(range(1, len(r["curves"]["test_acc"]) + 1)), **r["curves"]} for r in rows]


def table(rows: list[dict], epochs: int = EPOCHS) -> list[dict]:
    """Our Table 2 on Fashion-MNIST: final test accuracy (%) mean and std over seeds per (sparsity, arm), beside
    the paper's CIFAR-100 cell at 100 epochs (where it has one)."""
    from .paper import TABLE2

    out = []
    for sparsity in sorted({r["sparsity"] for r in rows if r["method"] == "rigl" and r["epochs"] == epochs}):
        for variant, label in (("rigl", "baseline"), ("rigl+sparseopt", "sparseopt")):
            accs = [100 * r["test_acc"] for r in select(rows, variant=variant, sparsity=sparsity, epochs=epochs)]
            if not accs:
                continue
            mean = sum(accs) / len(accs)
            std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
            paper = TABLE2.get((round(sparsity, 2), label), {}).get(100)
            out.append({"sparsity": sparsity, "method": label, "mean": mean, "std": std, "seeds": len(accs),
                        "values": accs, "paper_100ep": paper})
    return out


def format_table(cells: list[dict], epochs: int = EPOCHS) -> str:
    lines = [f"sparsity  arm        ours: Fashion-MNIST {epochs} ep   paper: CIFAR-100 100 ep",
             "--------  ---------  -------------------------   ----------------------"]
    for c in cells:
        paper = f"{c['paper_100ep'][0]:.2f} ± {c['paper_100ep'][1]:.2f}" if c["paper_100ep"] else "—"
        lines.append(f"{c['sparsity']:>7.0%}   {c['method']:9s}  {c['mean']:6.2f} ± {c['std']:.2f} (n={c['seeds']})"
                     f"{'':9s}{paper}")
    return "\n".join(lines)


def comparisons(rows: list[dict], kind: str, epochs: int | None = EPOCHS, method: str | None = None) -> list[dict]:
    """The paired comparisons of one kind ("sparseopt", "grow_from", "scope_vs_baseline", "scope_vs_gradient")
    among runs of ``epochs`` epochs (None: any length), optionally of one DST method, by sparsity."""
    from .train import grid

    out = [c for c in grid.paired_comparisons(rows) if c["kind"] == kind
           and (epochs is None or c["treatment"]["epochs"] == epochs)
           and (method is None or c["treatment"]["method"] == method)]
    return sorted(out, key=lambda c: c["treatment"]["sparsity"])


def format_verdicts(comps: list[dict], metrics=("test_acc", "error_area", "epochs_to_target")) -> str:
    """One line per comparison and metric: difference, 95% interval, verdict (accuracies in points)."""
    from .convergence import METRIC_LABELS

    lines = []
    for c in comps:
        t = c["treatment"]
        for m in metrics:
            d = c["metrics"].get(m)
            if d is None or d["ci95"] is None:
                continue
            title, scale, unit = METRIC_LABELS[m]
            lo, hi = (v * scale for v in d["ci95"])
            lines.append(f"{t['method']} {t['sparsity']:.0%} {t['epochs']} ep  {title:27s} "
                         f"{d['mean'] * scale:+6.2f} {unit} [{lo:+.2f}, {hi:+.2f}] n={d['n']}  {d['verdict']}")
    return "\n".join(lines)
