"""Grids of runs (variants x sparsities x seeds) and ``sparseopt-edu compare``: dense vs RigL vs RigL +
SparseOpt, a summary table, paired comparisons by seed and an HTML report. ``reproduce`` and ``demo`` run their
grids with the same helpers."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from . import command
from .args import add_threads_flag, floats, set_threads
from .config import check_dataset, config_flags, config_from_args
from .errors import CliError, guarded, raise_interrupt
from .train import fmt

AUTO_PARALLEL_CUDA = 8


def parallel_runs(text: str):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {text!r}")
    return value


def add_grid_args(parser: argparse.ArgumentParser, sparsities: str = "0.9", seeds: int = 1) -> None:
    parser.add_argument("--sparsities", type=floats, default=floats(sparsities), metavar="S,S,...",
                        help=f"sparsities of the sparse variants (default {sparsities})")
    parser.add_argument("--seeds", type=int, default=seeds, help=f"number of seeds, 0..N-1 (default {seeds})")
    parser.add_argument("--parallel", type=parallel_runs, default="auto", metavar="N|auto",
                        help="runs at once: on CUDA interleaved on one GPU, one CUDA stream each; on a CPU separate "
                             f"processes (default auto: {AUTO_PARALLEL_CUDA} on CUDA, 1 on a CPU)")
    parser.add_argument("--out", help="output folder")
    add_threads_flag(parser)


def _compare_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", default="", metavar="M,M,...",
                        help="variants added to dense, rigl, rigl+sparseopt: e.g. set,srigl (each with and "
                             "without SparseOpt) or srigl+sparseopt (that one only)")
    add_grid_args(parser)
    parser.set_defaults(sparsities=None, seeds=None)  # unset: from --config when it has them (_grid_from_config)
    config_flags(parser, skip=("method", "sparseopt", "sparsity", "seed"))


def _grid_from_config(args) -> None:
    """``compare --config FILE``: the method, sparsity and seed in FILE are used, not ignored; flags still win.

    Its method (with its sparseopt switch) joins the compared variants, its sparsity is the default of
    --sparsities and its seed the first seed (--seeds N then runs seed..seed+N-1). One line says what was taken.
    """
    from ..train import TrainConfig

    taken, file_cfg, keys = [], None, set()
    if getattr(args, "config", None) and os.path.isfile(args.config):
        file_cfg = TrainConfig.from_json(args.config)  # (a bad file fails here, with its message)
        with open(args.config) as fh:
            keys = set(json.load(fh))
    sparse = file_cfg is not None and file_cfg.method != "dense"
    if args.sparsities is None:
        args.sparsities = [file_cfg.sparsity] if sparse and "sparsity" in keys else [0.9]
        if args.sparsities != [0.9]:  # (compare's own default needs no mention)
            taken.append(f"sparsity {file_cfg.sparsity:g}")
    elif sparse and "sparsity" in keys and args.sparsities != [file_cfg.sparsity]:
        taken.append(f"its sparsity {file_cfg.sparsity:g} overridden by --sparsities")
    args.seed0 = file_cfg.seed if file_cfg is not None and "seed" in keys else 0
    if args.seeds is None:
        args.seeds = 1
    if args.seed0:
        taken.append(f"first seed {args.seed0}")
    if file_cfg is not None and "method" in keys:
        method = file_cfg.method
        variant = method if method == "dense" or not file_cfg.sparseopt else f"{method}+sparseopt"
        if variant not in _variants(args.methods):
            args.methods = ",".join(x for x in (args.methods, variant) if x)
            taken.append(f"method {variant}")
    if taken:
        print(f"from {args.config}: {'; '.join(taken)}", flush=True)


def _variants(extra: str) -> list[str]:
    from ..train.grid import DEFAULT_VARIANTS, parse_variant

    variants = list(DEFAULT_VARIANTS)
    for item in [x.strip() for x in extra.split(",") if x.strip()]:
        method, _ = parse_variant(item)
        adds = [item] if ("+" in item or method == "dense") else [method, f"{method}+sparseopt"]
        variants += [v for v in adds if v not in variants]
    return variants


def check_grid(args) -> None:
    set_threads(args)
    if args.seeds < 1:
        raise CliError(f"--seeds must be >= 1, got {args.seeds}")
    bad = [s for s in args.sparsities if not 0.0 < s < 1.0]
    if bad or not args.sparsities:
        raise CliError(f"--sparsities must be numbers in (0, 1), got {bad or 'none'}")


def _epoch_progress(jobs):
    """A callback that prints a line when each run starts and at each of its epochs (a long run is not silent)."""
    runs = {os.path.abspath(j.config.run_dir): (j.name, j.config.epochs) for j in jobs if j.config.run_dir}

    def callback(ev):  # events name their run (its folder); only rank 0 emits them
        name, epochs = runs.get(os.path.abspath(ev.run), (None, None)) if ev.run else (None, None)
        if name is None:
            return
        if ev.kind == "start":
            print(f"  {name:36s} started ({epochs} epochs, {ev.data.get('device')})", flush=True)
        elif ev.kind == "epoch":
            d = ev.data
            print(f"  {name:36s} epoch {d['epoch']}/{epochs}  train loss {fmt(d['train_loss'])}  "
                  f"test acc {fmt(d['test_acc'], True)}  {d['time_s']:.1f}s", flush=True)

    return callback


def run_grid(base, variants, args, out, title, echo=True, epochs_echo=False):
    from ..train import grid
    from ..train.runs import check_writable

    seed0 = getattr(args, "seed0", 0)  # compare --config: the file's seed is the first
    jobs = grid.plan(base, variants, args.sparsities, range(seed0, seed0 + args.seeds), out)
    check_writable(out)  # before any work
    order = {id(job): i for i, job in enumerate(jobs)}
    finished: dict[int, dict] = {}

    def progress(job, row):
        # the summary so far, rewritten as each run ends: an interrupted grid keeps the runs that finished
        finished[order[id(job)]] = row
        grid.write_results([finished[i] for i in sorted(finished)], out, title, config=base.to_dict())
        if echo:
            print(f"  {job.name:36s} test acc {fmt(row['final_test_acc'], True):>8s}  "
                  f"train loss {fmt(row['final_train_loss'])}  {grid.seconds(row['time_s'])}s  ({row['reason']})", flush=True)

    if echo:
        print(f"{len(jobs)} runs -> {out}", flush=True)
    parallel = args.parallel
    if parallel == "auto":  # measured (benchmarks/grid_throughput.py, H200): 8 interleaved runs 1.9x one at a time
        from ..train.concurrent import can_overlap

        parallel = AUTO_PARALLEL_CUDA if can_overlap(base) else 1
    # SIGTERM (a scheduler or a kill) stops the grid like Ctrl-C: finished runs stay in results.csv/md
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_interrupt) if main_thread else None
    try:
        rows = grid.run(jobs, parallel=parallel, on_result=progress,
                        callbacks=[_epoch_progress(jobs)] if echo and epochs_echo else ())
    except KeyboardInterrupt:
        if finished:  # once more: the signal may have cut the write of the last run's row
            grid.write_results([finished[i] for i in sorted(finished)], out, title, config=base.to_dict())
            print(f"sparseopt-edu: interrupted: results.csv and results.md in {out} hold the {len(finished)} of "
                  f"{len(jobs)} runs that ended", file=sys.stderr)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    paths = grid.write_results(rows, out, title, config=base.to_dict())
    return rows, paths


def write_compare_report(rows, out, title, sections=(), notes=()):
    """report.html: ``sections`` (HTML), the summary table, ``notes`` (HTML, read with the table), the curves."""
    from .. import report
    from ..train import grid

    try:
        import plotly  # noqa: F401
    except ImportError:  # e.g. a bare GPU image: the tables are written, the HTML report is skipped
        print("sparseopt-edu: warning: plotly is not installed, report.html skipped "
              "(pip install plotly)", file=sys.stderr)
        return "(no report.html: plotly missing)"
    table = report.markdown_to_html_table(grid.markdown_table(grid.summarize(rows)))
    html = report.page(title, report.convergence_figures(rows), [*sections, table, *notes])
    return report.write(os.path.join(out, "report.html"), html)


@command("compare", configure=_compare_args)
@guarded
def compare_cmd(args: argparse.Namespace) -> int:
    """Dense vs RigL vs RigL + SparseOpt (and more with --methods) x sparsities x seeds: table + HTML report."""
    from ..train import grid

    _grid_from_config(args)
    check_grid(args)
    variants = _variants(args.methods)
    base = config_from_args(args)
    check_dataset(base)
    out = args.out or os.path.join("runs", "compare")
    rows, paths = run_grid(base, variants, args, out, "Comparison")
    print()
    print(grid.markdown_table(grid.summarize(rows)))
    paired = [format_comparison(c) for c in grid.paired_comparisons(rows)]
    if paired and args.seeds > 1:
        print("Paired by seed (treatment - baseline, 95% t interval):\n" + "\n".join(paired))
    report = write_compare_report(rows, out, "sparseopt-edu compare")
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['json']}, {report}")
    return 0


def format_comparison(c: dict) -> str:
    """One paired comparison of ``grid.paired_comparisons``, labelled by what differs between its two arms."""
    from ..convergence import format_comparison as lines

    t, b = c["treatment"], c["baseline"]
    changed = {k: v for k, v in t.items() if b.get(k) != v and k != "sparsity"}
    label = f"{t['method']} at {t['sparsity']:.0%}: " + ", ".join(f"{k}={v}" for k, v in changed.items()) + \
        " vs " + ", ".join(f"{k}={b[k]}" for k in changed)
    return lines(c, label)

