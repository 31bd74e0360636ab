"""Convergence measured per run, and two arms compared paired by seed, with a 95% interval.

Why paired: the paper claims *faster convergence*, a difference of about one point between arms whose seeds
spread about as much. Runs of the same seed share their initial weights, masks and batch order, so the
per-seed difference (SparseOpt - baseline) removes most of that spread; its mean and a Student-t interval say
whether a difference is detectable at all. When the interval holds 0 we say "no detectable difference", never
"SparseOpt wins".

Per-run measures (``run_metrics``), each from the per-epoch test accuracy:
- ``test_acc`` (final) and ``best_test_acc``;
- ``error_area``: the area under the test-error curve divided by the epochs (the mean test error over epochs;
  lower means the run was better earlier, which is what converging faster means);
- ``epochs_to_target``: the first epoch whose test accuracy reaches the *baseline's final accuracy of the same
  seed*; ``None`` when the run never reaches it (paired differences then count it as epochs + 1 and report
  how many were censored).
"""
from __future__ import annotations

import math

#: two-sided 95% quantiles of Student's t, by degrees of freedom (a table: no scipy needed)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}

NO_DIFFERENCE = "no detectable difference"
METRICS = ("test_acc", "best_test_acc", "error_area", "epochs_to_target")
#: for each metric, whether larger is better (decides the wording of a detectable difference)
HIGHER_IS_BETTER = {"test_acc": True, "best_test_acc": True, "error_area": False, "epochs_to_target": False,
                    "itop": True}


#: metric -> (what a person reads, scale to print, unit)
METRIC_LABELS = {"test_acc": ("final test acc", 100, "pts"), "best_test_acc": ("best test acc", 100, "pts"),
                 "error_area": ("mean test error", 100, "pts"),
                 "epochs_to_target": ("epochs to baseline's final", 1, "ep"), "itop": ("final ITOP", 100, "pts")}


def t_quantile_95(df: int) -> float:
    """Two-sided 95% t quantile; between table entries the next smaller df is used (a slightly wider interval)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df > 120:
        return 1.960
    return _T95[max(k for k in _T95 if k <= df)]


def epochs_to_reach(curve: list, target: float) -> int | None:
    """1-based epoch at which ``curve`` first reaches ``target`` (None if it never does)."""
    for i, v in enumerate(curve):
        if v is not None and v >= target:
            return i + 1
    return None


def error_area(curve: list) -> float | None:
    """Mean test error over the epochs (area under the 1 - accuracy curve, one unit per epoch, / epochs)."""
    values = [1.0 - v for v in curve if v is not None]
    return sum(values) / len(values) if values else None


def run_metrics(test_acc: list, target: float | None) -> dict:
    """Final and best accuracy, error area, and epochs to reach ``target`` (the paired baseline's final)."""
    acc = [v for v in test_acc if v is not None]
    return {"test_acc": acc[-1] if acc else None, "best_test_acc": max(acc) if acc else None,
            "error_area": error_area(test_acc),
            "epochs_to_target": None if target is None else epochs_to_reach(test_acc, target)}


def paired_difference(treatment: dict, baseline: dict, higher_is_better: bool = True) -> dict:
    """Mean of treatment[seed] - baseline[seed] over the shared seeds, its 95% t interval, and a verdict.

    ``verdict`` is "no detectable difference" when the interval holds 0, else "higher" / "lower" with
    "(better)" or "(worse)" by ``higher_is_better``; "too few seeds" under two shared seeds.
    """
    seeds = sorted(set(treatment) & set(baseline))
    diffs = [treatment[s] - baseline[s] for s in seeds if treatment[s] is not None and baseline[s] is not None]
    n = len(diffs)
    out = {"n": n, "seeds": seeds, "diffs": diffs, "mean": None, "sd": None, "ci95": None, "verdict": "too few seeds"}
    if n == 0:
        return out
    mean = sum(diffs) / n
    out["mean"] = mean
    if n < 2:
        return out
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile_95(n - 1) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    out.update(sd=sd, ci95=[lo, hi])
    if lo <= 0.0 <= hi:
        out["verdict"] = NO_DIFFERENCE
    else:
        higher = lo > 0
        out["verdict"] = ("higher" if higher else "lower") + (" (better)" if higher == higher_is_better else " (worse)")
    return out


def _matches(row: dict, arm: dict) -> bool:
    return all(row.get(k) == v for k, v in arm.items())


def compare_arms(rows: list[dict], treatment: dict, baseline: dict, metrics=METRICS) -> dict:
    """Paired comparison of two arms of a results table (rows as written by ``grid.result_row``).

    ``treatment`` / ``baseline`` select rows by field values (e.g. ``{"variant": "rigl+sparseopt",
    "sparsity": 0.95, "scope": "gradient"}``). ``epochs_to_target`` uses, for both arms, the baseline run's final
    accuracy of the same seed as the target; runs that never reach it count as epochs + 1 (``censored``).
    """
    base = {r["seed"]: r for r in rows if _matches(r, baseline)}
    treat = {r["seed"]: r for r in rows if _matches(r, treatment)}
    result = {"treatment": dict(treatment), "baseline": dict(baseline), "metrics": {}}
    per_arm = {}
    censored = {"treatment": 0, "baseline": 0}
    for arm_name, arm in (("treatment", treat), ("baseline", base)):
        values = {}
        for seed, r in arm.items():
            target = base[seed]["test_acc"] if seed in base else None
            m = run_metrics(r["curves"]["test_acc"], target)
            if target is not None and m["epochs_to_target"] is None:
                m["epochs_to_target"] = len(r["curves"]["test_acc"]) + 1
                censored[arm_name] += 1
            m["itop"] = r.get("itop")
            values[seed] = m
        per_arm[arm_name] = values
    for metric in (*metrics, "itop"):
        t = {s: v[metric] for s, v in per_arm["treatment"].items()}
        b = {s: v[metric] for s, v in per_arm["baseline"].items()}
        if all(x is None for x in [*t.values(), *b.values()]):
            continue
        d = paired_difference(t, b, HIGHER_IS_BETTER[metric])
        d["treatment_mean"] = _mean([t[s] for s in d["seeds"]])
        d["baseline_mean"] = _mean([b[s] for s in d["seeds"]])
        result["metrics"][metric] = d
    result["censored"] = censored
    return result


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def format_comparison(c: dict, label: str = "") -> str:
    """A few lines a person can read: each metric's arm means, the paired difference, its interval, the verdict."""
    lines = [label] if label else []
    for metric, d in c["metrics"].items():
        title, scale, unit = METRIC_LABELS[metric]
        if d["mean"] is None:
            continue
        ci = "" if d["ci95"] is None else f" [{d['ci95'][0] * scale:+.2f}, {d['ci95'][1] * scale:+.2f}]"
        lines.append(f"  {title:26s} {d['treatment_mean'] * scale:7.2f} vs {d['baseline_mean'] * scale:7.2f}   "
                     f"diff {d['mean'] * scale:+.2f} {unit}{ci} (n={d['n']}): {d['verdict']}")
    return "\n".join(lines)
