"""Convergence measures and paired statistics, on synthetic numbers with a known answer."""
import math

import pytest

from sparseopt_edu.convergence import (
    NO_DIFFERENCE,
    compare_arms,
    epochs_to_reach,
    error_area,
    paired_difference,
    run_metrics,
    t_quantile_95,
)
from sparseopt_edu.train import grid


def test_t_quantiles_match_the_table_values():
    assert t_quantile_95(1) == pytest.approx(12.706)
    assert t_quantile_95(4) == pytest.approx(2.776)
    assert t_quantile_95(22) == pytest.approx(2.086)  # between entries: the smaller df (wider interval)
    assert t_quantile_95(10_000) == pytest.approx(1.96)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_95(0)


def test_paired_difference_known_answer():
    # diffs 1, 2, 3, 4, 5: mean 3, sd sqrt(2.5), half-width 2.776 * sqrt(2.5) / sqrt(5)
    t = {s: 10.0 + s + 1 for s in range(5)}
    b = {s: 10.0 for s in range(5)}
    d = paired_difference(t, b)
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert d["n"] == 5 and d["mean"] == pytest.approx(3.0) and d["sd"] == pytest.approx(math.sqrt(2.5))
    assert d["ci95"] == pytest.approx([3.0 - half, 3.0 + half])
    assert d["verdict"] == "higher (better)"
    assert paired_difference(t, b, higher_is_better=False)["verdict"] == "higher (worse)"


def test_interval_holding_zero_says_no_detectable_difference():
    d = paired_difference({0: 1.0, 1: -1.0, 2: 0.5}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d["ci95"][0] < 0 < d["ci95"][1] and d["verdict"] == NO_DIFFERENCE
    assert paired_difference({0: 1.0}, {0: 0.0})["verdict"] == "too few seeds"
    assert paired_difference({0: 1.0, 3: 2.0}, {1: 0.0, 3: 0.0})["n"] == 1  # only shared seeds are paired


def test_pairing_removes_the_seed_spread():
    # Seeds spread by 10 points; the treatment is 0.5 better on every seed: unpaired this is invisible,
    # paired it is exact.
    base = {s: 50.0 + 10 * s for s in range(5)}
    treat = {s: v + 0.5 for s, v in base.items()}
    d = paired_difference(treat, base)
    assert d["mean"] == pytest.approx(0.5) and d["sd"] == pytest.approx(0.0, abs=1e-12)
    assert d["verdict"] == "higher (better)"


def test_run_metrics():
    curve = [0.2, 0.5, 0.7, 0.65, 0.8]
    assert epochs_to_reach(curve, 0.7) == 3 and epochs_to_reach(curve, 0.9) is None
    assert error_area(curve) == pytest.approx(1 - sum(curve) / 5)
    m = run_metrics(curve, 0.66)
    assert m == {"test_acc": 0.8, "best_test_acc": 0.8, "error_area": pytest.approx(0.43), "epochs_to_target": 3}


def _row(variant, seed, curve, sparsity=0.9, itop=None):
    method, sparseopt, options = grid.parse_variant_options(variant)
    return {"variant": variant, "method": method, "sparseopt": sparseopt, "sparsity": sparsity, "seed": seed,
            "grow_from": options.get("grow_from", "raw"), "scope": options.get("scope", "gradient"), "epochs": len(curve),
            "test_acc": curve[-1], "final_test_acc": curve[-1], "final_train_loss": 1.0, "time_s": 1.0,
            "best_test_acc": max(curve), "itop": itop, "curves": {"test_acc": curve, "train_loss": [1.0] * len(curve)}}


def test_compare_arms_epochs_to_the_baselines_final_paired_by_seed():
    rows = []
    for seed in range(4):
        rows.append(_row("rigl", seed, [0.5, 0.6, 0.7, 0.8], itop=0.5))
        rows.append(_row("rigl+sparseopt", seed, [0.6, 0.8, 0.81, 0.82], itop=0.4))  # reaches 0.8 at epoch 2
    c = compare_arms(rows, {"variant": "rigl+sparseopt"}, {"variant": "rigl"})
    e = c["metrics"]["epochs_to_target"]
    assert e["treatment_mean"] == 2 and e["baseline_mean"] == 4 and e["mean"] == -2
    assert e["verdict"] == "lower (better)"
    assert c["metrics"]["test_acc"]["mean"] == pytest.approx(0.02)
    assert c["metrics"]["itop"]["mean"] == pytest.approx(-0.1) and c["metrics"]["itop"]["verdict"] == "lower (worse)"
    assert c["censored"] == {"treatment": 0, "baseline": 0}


def test_a_run_that_never_reaches_the_target_is_censored_at_epochs_plus_one():
    rows = [_row("rigl", 0, [0.5, 0.9]), _row("rigl+sparseopt", 0, [0.5, 0.8]),
            _row("rigl", 1, [0.5, 0.9]), _row("rigl+sparseopt", 1, [0.9, 0.9])]
    c = compare_arms(rows, {"variant": "rigl+sparseopt"}, {"variant": "rigl"})
    assert c["censored"]["treatment"] == 1
    assert c["metrics"]["epochs_to_target"]["diffs"] == [1, -1]  # seed 0: 3 (censored) - 2; seed 1: 1 - 2


def test_variant_options_and_paired_comparisons_found_in_a_table():
    assert grid.parse_variant_options("rigl+sparseopt:grow_from=corrected,scope=update") == (
        "rigl", True, {"grow_from": "corrected", "scope": "update"})
    for bad, match in (("rigl:scope=update", "only applies with SparseOpt"), ("set+sparseopt:grow_from=corrected",
                       "rigl and srigl only"), ("rigl+sparseopt:lr=3", "unknown variant option")):
        with pytest.raises(ValueError, match=match):
            grid.parse_variant_options(bad)
    rows = [_row(v, s, [0.5, 0.6 + 0.01 * s]) for v in ("rigl", "rigl+sparseopt", "rigl+sparseopt:grow_from=corrected",
                                                           "rigl+sparseopt:scope=update") for s in range(3)]
    kinds = sorted(c["kind"] for c in grid.paired_comparisons(rows))
    assert kinds == ["grow_from", "scope_vs_baseline", "scope_vs_gradient", "sparseopt"]


def test_runs_of_another_length_are_not_paired_together():
    short = [_row(v, s, [0.5, 0.6]) for v in ("rigl", "rigl+sparseopt") for s in range(2)]
    long = [_row(v, s, [0.5, 0.6, 0.7]) for v in ("rigl", "rigl+sparseopt") for s in range(2)]
    comparisons = grid.paired_comparisons(short + long)
    assert sorted(c["treatment"]["epochs"] for c in comparisons) == [2, 3]
    assert all(c["metrics"]["test_acc"]["n"] == 2 for c in comparisons)


def test_committed_gpu_evidence_loads_and_pairs():
    """The JSON files notebook 05 reads: every row has the fields the issue lists, and the comparisons pair 5 seeds."""
    from sparseopt_edu import evidence

    rows = evidence.load_rows()
    fields = {"variant", "method", "sparseopt", "sparsity", "seed", "grow_from", "scope", "epochs", "test_acc",
              "best_test_acc", "curves", "itop", "device"}
    assert rows and all(fields <= set(r) for r in rows)
    assert {r["sparsity"] for r in rows if r["method"] == "rigl"} >= {0.9, 0.95, 0.97, 0.99}
    main = [c for c in grid.paired_comparisons(rows) if c["kind"] == "sparseopt" and c["treatment"]["epochs"] == 30]
    assert len(main) >= 4 and all(c["metrics"]["test_acc"]["n"] >= 5 for c in main)
    assert all(len(r["curves"]["test_acc"]) == r["epochs"] for r in rows)
