"""Grids of runs (method variants x sparsities x seeds), their results table, and Markdown summaries.

Used by ``sparseopt-edu compare``, ``reproduce table2`` and ``demo``. A *variant* is a method name with an
optional ``+sparseopt`` suffix: "dense", "rigl" (the masked baseline, SparseOpt(enabled=False)),
"rigl+sparseopt", "set", "srigl+sparseopt", ... so two variants of one method differ in one switch. Options
after a colon set the ablations' fields: "rigl+sparseopt:grow_from=corrected" (the paper's ITOP ablation),
"rigl+sparseopt:scope=update" (our per-neuron learning rate, see SparseOpt).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import time
from dataclasses import dataclass

from .concurrent import can_overlap, run_concurrently
from .config import METHODS, TrainConfig
from .control import RunControl
from .engine import Trainer
from .runs import atomic_write_text

DEFAULT_VARIANTS = ("dense", "rigl", "rigl+sparseopt")
RESULT_KEYS = ("variant", "method", "sparseopt", "sparsity", "seed", "grow_from", "scope", "epochs",
               "final_train_loss", "final_test_acc", "best_test_acc", "itop", "time_s", "reason", "device", "run_dir")
#: config fields a variant may set after a colon, and their allowed values
VARIANT_OPTIONS = {"grow_from": ("raw", "corrected"), "scope": ("gradient", "update")}


def parse_variant(variant: str) -> tuple[str, bool]:
    """(method, sparseopt) of a variant such as "rigl+sparseopt" or "rigl+sparseopt:scope=update"."""
    method, sparseopt, _ = parse_variant_options(variant)
    return method, sparseopt


def parse_variant_options(variant: str) -> tuple[str, bool, dict]:
    """(method, sparseopt, {field: value}) of a variant; options come after ':' as key=value, comma-separated."""
    name, _, opts = variant.partition(":")
    method, _, suffix = name.partition("+")
    if method not in METHODS or suffix not in ("", "sparseopt") or (method == "dense" and suffix):
        raise ValueError(f"unknown variant {variant!r}: use a method ({', '.join(METHODS)}), optionally with "
                         "'+sparseopt' (e.g. rigl+sparseopt; dense has no SparseOpt variant)")
    options = {}
    for item in [o for o in opts.split(",") if o]:
        key, _, value = item.partition("=")
        if key not in VARIANT_OPTIONS or value not in VARIANT_OPTIONS[key]:
            allowed = "; ".join(f"{k}={'|'.join(v)}" for k, v in VARIANT_OPTIONS.items())
            raise ValueError(f"unknown variant option {item!r} in {variant!r}: use {allowed}")
        options[key] = value
    if "scope" in options and not suffix:
        raise ValueError(f"variant {variant!r}: scope only applies with SparseOpt (write {method}+sparseopt:...)")
    if "grow_from" in options and method not in ("rigl", "srigl"):
        raise ValueError(f"variant {variant!r}: grow_from applies to rigl and srigl only")
    return method, suffix == "sparseopt", options


@dataclass
class Job:
    variant: str
    sparsity: float
    seed: int
    config: TrainConfig

    @property
    def name(self) -> str:
        sp = "dense" if self.variant == "dense" else f"s{round(self.sparsity * 100):02d}"
        label = self.variant.replace("+", "_").replace(":", "-").replace("=", "-").replace(",", "-")
        return f"{label}-{sp}-seed{self.seed}"


def plan(base: TrainConfig, variants, sparsities, seeds, out_dir: str | None = None) -> list[Job]:
    """One job per (variant, sparsity, seed); dense runs once per seed (sparsity does not apply)."""
    jobs = []
    for variant in variants:
        method, sparseopt, options = parse_variant_options(variant)
        for sparsity in ([0.0] if method == "dense" else sparsities):
            for seed in seeds:
                job = Job(variant, float(sparsity), int(seed), None)
                run_dir = os.path.join(out_dir, "runs", job.name) if out_dir else None
                job.config = base.replace(method=method, sparseopt=sparseopt,
                                          sparsity=float(sparsity) if method != "dense" else base.sparsity,
                                          seed=int(seed), run_dir=run_dir, **options)
                jobs.append(job)
    return jobs


_STOPPING = False  # set in a pool worker by SIGTERM: the runs already handed to it then end at once


def _worker_init() -> None:
    """A pool worker ignores Ctrl-C (the parent decides) and dies quietly on SIGTERM between runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_config(config_dict: dict, threads: int | None = None) -> dict:
    """Top level so a process pool can call it: train and return the History as a dict.

    SIGTERM during the run asks it to stop after its current step (reason "stopped", a checkpoint of that step,
    records written). The handler only sets flags and never raises: a signal that lands while the run writes its
    records or returns its History (it did, a few ms wide: the run kept its files but lost its row) cannot cut
    them, so the parent always gets the row.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    if _STOPPING:  # the pool hands out one more run than it has workers: do not start it
        raise KeyboardInterrupt
    control = RunControl()

    def stop(signum, frame):
        global _STOPPING
        _STOPPING = True
        control.stop()  # an Event's set(): safe inside a signal handler (the loop only reads the flag)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return Trainer(TrainConfig.from_dict(config_dict), control=control).run().to_dict()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_pool(pool, futures: dict, handled: set, done, grace_s: float = 30.0) -> None:
    """Stop a process pool now: cancel queued runs, SIGTERM the workers (each running run ends "stopped"
    and writes its records), report the runs that end within ``grace_s``, then terminate what is left."""
    from concurrent.futures import wait

    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public API lists them; shutdown drops them
    pool.shutdown(wait=False, cancel_futures=True)
    for w in workers:
        with contextlib.suppress(OSError, ValueError):
            if w.is_alive():
                os.kill(w.pid, signal.SIGTERM)
    # poll: the pool cancels the queued futures from its own thread, and a cancelled future never wakes wait()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        left = [f for f in futures if f not in handled and not f.done()]
        if not left:
            break
        wait(left, timeout=0.1)
    for fut in futures:
        if fut not in handled and fut.done() and not fut.cancelled() and fut.exception() is None:
            handled.add(fut)
            done(futures[fut], fut.result())
    for w in workers:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            if w.is_alive():
                w.terminate()
            w.join(timeout=5)


def run(jobs: list[Job], parallel: int = 1, on_result=None, callbacks=(), control=None) -> list[dict]:
    """Run every job and return one result row per job, in job order.

    ``parallel`` > 1: on CUDA the runs share the GPU, one CUDA stream each, interleaved by one thread (``concurrent.py``:
    separate processes only time-slice the GPU); on a CPU (or with torch.compile) as separate processes.
    ``callbacks`` subscribe to the events of runs made in this process (not those of a process pool);
    ``control`` (a ``RunControl``) steers those runs: ``control.stop()`` ends the current ones, and any run of
    the grid still to start stops at once.
    """
    histories: dict[int, dict] = {}
    configs = [job.config for job in jobs]

    def done(i: int, history: dict) -> None:
        histories[i] = history
        if on_result:
            on_result(jobs[i], result_row(jobs[i], history))

    if parallel <= 1 or all(can_overlap(c) for c in configs):
        run_concurrently(configs, parallel, on_done=done, callbacks=callbacks, control=control)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // parallel)
        pool = ProcessPoolExecutor(parallel, mp_context=mp.get_context("spawn"), initializer=_worker_init)
        futures = {pool.submit(_run_config, c.to_dict(), threads): i for i, c in enumerate(configs)}
        handled: set = set()
        try:
            for fut in as_completed(futures):
                handled.add(fut)
                done(futures[fut], fut.result())
        except BaseException:  # Ctrl-C, SIGTERM or a failed run: stop now, not after every queued run
            _stop_pool(pool, futures, handled, done)
            raise
        pool.shutdown()
    return [result_row(job, histories[i]) for i, job in enumerate(jobs)]


def result_row(job: Job, history: dict) -> dict:
    """One run's row: its settings, final/best numbers, final ITOP, the per-epoch curves, and the History."""
    acc = [a for a in history["test_acc"] if a is not None]
    loss = [v for v in history["train_loss"] if v is not None]
    topology = history.get("topology") or []
    meta = history.get("meta") or {}
    cfg = job.config
    return {
        "variant": job.variant, "method": cfg.method, "sparseopt": cfg.sparseopt,
        "sparsity": job.sparsity, "seed": job.seed, "grow_from": cfg.grow_from, "scope": cfg.scope,
        "epochs": len(history["epoch"]),
        "final_train_loss": loss[-1] if loss else None, "final_test_acc": acc[-1] if acc else None,
        "test_acc": acc[-1] if acc else None,
        "best_test_acc": max(acc) if acc else None, "itop": topology[-1]["itop"] if topology else None,
        # the run's wall time (training, evaluation, checkpoints, every resumed part): the epoch times leave out
        # a stopped or interrupted epoch and one that ended in NaN, so a run stopped in its first epoch had 0.0
        "time_s": meta["wall_s"] if meta.get("wall_s") is not None else sum(t or 0.0 for t in history["time_s"]),
        "reason": history["reason"], "device": meta.get("device_name") or meta.get("device"),
        "run_dir": cfg.run_dir,
        "curves": {"train_loss": list(history["train_loss"]), "test_acc": list(history["test_acc"])},
        "history": history,
    }


def _mean_std(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per (variant, sparsity), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["sparsity"]), []).append(r)
    out = []
    for (variant, sparsity), rs in groups.items():
        acc_m, acc_s = _mean_std([r["final_test_acc"] for r in rs])
        loss_m, loss_s = _mean_std([r["final_train_loss"] for r in rs])
        out.append({"variant": variant, "sparsity": sparsity, "seeds": len(rs), "test_acc_mean": acc_m,
                    "test_acc_std": acc_s, "train_loss_mean": loss_m, "train_loss_std": loss_s,
                    "time_s_mean": _mean_std([r["time_s"] for r in rs])[0]})
    return out


def finite(obj):
    """The same structure with NaN/inf replaced by None (JSON has no NaN; a diverged run has them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _pm(m, s, scale=1.0, digits=2):
    if m is None:
        return "n/a"
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def seconds(t) -> str:
    """A duration for a table: one decimal, two below 1 s (a short run is not shown as 0.0)."""
    return "n/a" if t is None else f"{t:.1f}" if t >= 1 else f"{t:.2f}"


def markdown_table(summary: list[dict]) -> str:
    lines = ["| variant | sparsity | seeds | test acc (%) | final train loss | time/run (s) |",
             "|---|---|---|---|---|---|"]
    for r in summary:
        sp = "—" if r["variant"] == "dense" else f"{r['sparsity']:.0%}"
        lines.append(f"| {r['variant']} | {sp} | {r['seeds']} | {_pm(r['test_acc_mean'], r['test_acc_std'], 100)} "
                     f"| {_pm(r['train_loss_mean'], r['train_loss_std'], 1, 4)} | {seconds(r['time_s_mean'])} |")
    return "\n".join(lines) + "\n"


def paired_comparisons(rows: list[dict]) -> list[dict]:
    """Every paired comparison a results table allows, SparseOpt (or an ablation) against its baseline, per
    sparsity: X+sparseopt vs X; grow_from=corrected vs raw (both with SparseOpt); scope=update vs the baseline X
    and vs scope=gradient. Rows must come from ``result_row``."""
    from ..convergence import compare_arms

    def key(r):
        return (r["method"], r["sparseopt"], r["grow_from"], r["scope"], r["epochs"])

    present = {(r["sparsity"], *key(r)) for r in rows if r["method"] != "dense"}
    pairs = []
    for sparsity, method, sparseopt, grow, scope, epochs in sorted(present):
        arm = {"sparsity": sparsity, "method": method, "sparseopt": sparseopt, "grow_from": grow, "scope": scope,
               "epochs": epochs}  # runs of another length are another experiment
        base = {**arm, "sparseopt": False, "grow_from": "raw", "scope": "gradient"}
        plain = {**arm, "grow_from": "raw", "scope": "gradient"}
        if sparseopt and grow == "raw" and scope == "gradient":
            pairs.append(("sparseopt", arm, base))
        if grow == "corrected":
            pairs.append(("grow_from", arm, {**arm, "grow_from": "raw"}))
        if sparseopt and scope == "update":
            pairs.append(("scope_vs_baseline", arm, base))
            pairs.append(("scope_vs_gradient", arm, plain))
    out = []
    for kind, treatment, baseline in pairs:
        if (treatment["sparsity"], *key(baseline)) not in present:
            continue
        c = compare_arms(rows, treatment, baseline)
        c["kind"] = kind
        out.append(c)
    return out


def json_rows(rows: list[dict]) -> list[dict]:
    """The rows as written to results.json: every field but the in-memory History."""
    return [{k: v for k, v in r.items() if k != "history"} for r in rows]


def write_results(rows: list[dict], out_dir: str, title: str = "Results", config: dict | None = None) -> dict:
    """results.csv (one row per run), results.md (mean ± std over seeds) and results.json (the rows with their
    curves, the summary and the paired comparisons); returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(RESULT_KEYS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in RESULT_KEYS})
    paths = {"csv": os.path.join(out_dir, "results.csv"), "md": os.path.join(out_dir, "results.md"),
             "json": os.path.join(out_dir, "results.json")}
    atomic_write_text(paths["csv"], buf.getvalue())
    document = {"title": title, "config": config, "rows": json_rows(rows), "summary": summarize(rows),
                "comparisons": paired_comparisons(rows)}
    atomic_write_text(paths["json"], json.dumps(finite(document), indent=1, allow_nan=False) + "\n")
    atomic_write_text(paths["md"], f"# {title}\n\n" + markdown_table(summarize(rows)))
    return paths
