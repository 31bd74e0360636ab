"""The paper's published numbers (Adnan et al., ICML 2026; docs/method.md section 3), as data the notebooks plot,
our recipe for its Table 2 experiment, and the table that puts our Table 2 numbers beside the paper's.

Top-1 test accuracy in percent. Kept here, not in a notebook, so a figure, a test and the CLI all compare
against the same numbers. Nothing here is measured by us.
"""
from __future__ import annotations

from dataclasses import dataclass

CITATION = ("M. Adnan, R. Jain, T. Jacobs, E. Sharma, R. G. Krishnan, R. Burkholz, Y. Ioannou, "
            "SparseOpt: Addressing Normalization-induced Gradient Skew in Sparse Training, ICML 2026, "
            "arXiv 2605.27541")

TABLE2_EPOCHS = (100, 200, 300, 500)
TABLE2_SPARSITIES = (0.90, 0.95, 0.97)
TABLE2_METHODS = ("sparseopt", "baseline")

# Table 2: ResNet-20 on CIFAR-100 with RigL, mean +- std over seeds: (sparsity, method) -> {epochs: (mean, std)}
TABLE2: dict[tuple[float, str], dict[int, tuple[float, float]]] = {
    (0.90, "sparseopt"): {100: (61.34, 0.35), 200: (63.12, 0.39), 300: (64.30, 0.08), 500: (65.22, 0.40)},
    (0.90, "baseline"): {100: (60.66, 0.43), 200: (62.93, 0.17), 300: (63.77, 0.35), 500: (64.66, 0.17)},
    (0.95, "sparseopt"): {100: (56.80, 0.49), 200: (59.91, 0.45), 300: (60.67, 0.63), 500: (61.74, 0.35)},
    (0.95, "baseline"): {100: (55.80, 0.73), 200: (59.22, 0.55), 300: (60.00, 0.54), 500: (61.45, 0.65)},
    (0.97, "sparseopt"): {100: (53.95, 0.40), 200: (57.01, 0.19), 300: (57.62, 0.59), 500: (58.35, 0.34)},
    (0.97, "baseline"): {100: (52.53, 0.35), 200: (54.87, 0.78), 300: (56.50, 0.33), 500: (57.32, 0.16)},
}

# SparseOpt + HAM at 95% sparsity, same setting as Table 2: {epochs: mean}
TABLE2_HAM_95 = {100: 57.31, 200: 60.41, 300: 60.91, 500: 62.20}

# Table 1: ResNet-50 on ImageNet, 90 epochs: (method, sparsity) -> (sparseopt, baseline)
TABLE1 = {
    ("rigl", 0.90): (74.41, 73.88), ("rigl", 0.95): (72.93, 72.33), ("rigl", 0.97): (71.15, 69.94),
    ("set", 0.90): (74.15, 73.69), ("set", 0.95): (72.59, 71.84), ("set", 0.97): (71.43, 70.12),
}


@dataclass(frozen=True)
class Row:
    sparsity: float
    method: str  # "sparseopt" | "baseline"
    epochs: int
    mean: float
    std: float
    source: str = "paper"


def table2(sparsity: float, method: str, epochs: int) -> tuple[float, float]:
    """(mean, std) of one Table 2 cell; clear error for a cell the paper does not have."""
    key = (round(float(sparsity), 2), method)
    if key not in TABLE2:
        raise KeyError(f"Table 2 has no row for sparsity={sparsity}, method={method!r}: sparsities "
                       f"{TABLE2_SPARSITIES}, methods {TABLE2_METHODS}")
    if epochs not in TABLE2[key]:
        raise KeyError(f"Table 2 has no {epochs}-epoch column: epochs are {TABLE2_EPOCHS}")
    return TABLE2[key][epochs]


def table2_rows(epochs: int | None = None) -> list[Row]:
    """Every Table 2 cell as a Row (optionally one epoch column only)."""
    return [Row(sp, m, ep, *ms) for (sp, m), cols in TABLE2.items() for ep, ms in cols.items()
            if epochs is None or ep == epochs]


def table2_gain(sparsity: float, epochs: int) -> float:
    """SparseOpt minus baseline, in accuracy points, for one Table 2 cell pair."""
    return table2(sparsity, "sparseopt", epochs)[0] - table2(sparsity, "baseline", epochs)[0]


def table2_recipe(dataset: str = "cifar100", epochs: int = 100, *, batch_size: int = 128, delta_t: int = 100,
                  n_train: int | None = None, n_test: int | None = None, device: str = "auto",
                  data_root: str = "data"):
    """docs/method.md section 3 (RigL's CIFAR conventions; the paper publishes none): ResNet-20, SGD 0.1 Nesterov,
    cosine, wd 5e-4, batch 128, ERK, RigL dT=100, alpha 0.3, T_end 0.75, growth from the raw gradient."""
    from .train.config import TrainConfig

    data_kwargs = {"num_classes": 100} if dataset == "shapes" else {}
    return TrainConfig(model="resnet20", dataset=dataset, norm="bn", distribution="erk", method="rigl",
                       optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                       batch_size=batch_size, epochs=epochs, delta_t=delta_t, alpha=0.3, t_end=0.75,
                       grow_from="raw", n_train=n_train, n_test=n_test, device=device,
                       data_root=data_root, data_kwargs=data_kwargs, progress=False,
                       log_every=100)  # a step log is a host sync: on a GPU, one per 100 steps (tables use epochs)


def table2_config(run):
    """``table2_recipe`` with the sizes of one reproduction, read from ``run``'s attributes (``dataset``,
    ``epochs``, ``batch_size``, ``delta_t``, ``n_train``, ``n_test``, ``device``, ``data_root``): the namespace of
    ``sparseopt-edu reproduce``, or a benchmark's, so both run exactly the same recipe; ``compile`` (optional,
    default off) compiles every run."""
    cfg = table2_recipe(run.dataset, run.epochs, batch_size=run.batch_size, delta_t=run.delta_t,
                        n_train=run.n_train, n_test=run.n_test, device=run.device, data_root=run.data_root)
    return cfg.replace(compile=True) if getattr(run, "compile", False) else cfg


def format_table2(rows, epochs: int) -> str:
    """A Markdown table of our RigL and RigL + SparseOpt accuracies (mean ± std over seeds) beside Table 2's
    cells; ``rows`` are ``train.grid`` results. A run length the paper lacks is shown beside its 100-epoch column."""
    from .train import grid

    column = epochs if epochs in TABLE2_EPOCHS else 100
    summary = {(r["variant"], r["sparsity"]): r for r in grid.summarize(rows)}
    head = f"| sparsity | method | ours ({epochs} ep, top-1 %) | paper ({column} ep) |"
    lines = [head, "|---|---|---|---|"]
    for sp in sorted({r["sparsity"] for r in rows if r["method"] == "rigl"}):
        for variant, label in (("rigl+sparseopt", "sparseopt"), ("rigl", "baseline")):
            s = summary.get((variant, sp))
            ours = "n/a" if s is None or s["test_acc_mean"] is None else \
                f"{100 * s['test_acc_mean']:.2f} ± {100 * s['test_acc_std']:.2f} (n={s['seeds']})"
            paper = TABLE2.get((round(sp, 2), label), {}).get(column)
            paper_txt = f"{paper[0]:.2f} ± {paper[1]:.2f}" if paper else "—"
            lines.append(f"| {sp:.0%} | {'SparseOpt' if label == 'sparseopt' else 'baseline'} | {ours} | {paper_txt} |")
    return "\n".join(lines) + "\n"
