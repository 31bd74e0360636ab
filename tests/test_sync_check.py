"""benchmarks/sync_check.py's verdicts, on synthetic call records (no CUDA needed; issue 15 item 8).

The checker used to allow any site with ``flush``, ``_eager`` or ``__init__`` anywhere in its call chain, and any
site that synced once: a per-update sync (the DST's flush reached from ``_train_step``) passed ``--strict``. The
shapes below are the chains the H200 recorded (2 epochs, 200 steps, 5 topology updates), with checks deferred
(the engine on CUDA) and without (``--no-defer``, the negative control).
"""
from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("sync_check", REPO_ROOT / "benchmarks" / "sync_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


sc = _load()
UNITS = sc.units(epochs=2, log_steps=0, captures=2)

# innermost first, as the recorder stores them
EPOCH_END = {
    ("sparseopt_edu/dst/core.py", 243, "_flush_locked"):
        (2, ["_flush_locked", "flush", "updates", "_flush_topology", "_end_epoch", "iterate", "run"]),
    ("sparseopt_edu/train/engine.py", 421, "_flush_topology"): (2, ["_flush_topology", "_end_epoch", "iterate", "run"]),
    ("sparseopt_edu/train/engine.py", 514, "_end_epoch"): (2, ["_end_epoch", "iterate", "run"]),
    ("sparseopt_edu/train/engine.py", 508, "evaluate"): (2, ["evaluate", "_end_epoch", "iterate", "run"]),
}
PER_UPDATE = {
    ("sparseopt_edu/dst/core.py", 243, "_flush_locked"):
        (5, ["_flush_locked", "flush", "update", "step", "_train_step", "iterate", "run"]),
    ("sparseopt_edu/train/engine.py", 421, "_flush_topology"): (5, ["_flush_topology", "_train_step", "iterate", "run"]),
}


def _judge(records: dict, run_units=UNITS):
    sites = {k: n for k, (n, _) in records.items()}
    chains = {k: chain for k, (_, chain) in records.items()}
    return {v.site: v for v in sc.judge_all(sites, chains, run_units)}


def test_epoch_end_syncs_pass():
    verdicts = _judge(EPOCH_END)
    assert all(v.allowed for v in verdicts.values()), [v.why for v in verdicts.values()]


def test_a_per_update_flush_fails_although_it_is_a_flush():
    """The old allow-list held "flush": the same flush reached from _train_step (once per update) passed."""
    verdicts = _judge({**EPOCH_END, **PER_UPDATE})
    bad = {k for k, v in verdicts.items() if not v.allowed}
    assert bad == set(PER_UPDATE)
    assert "per-step path" in verdicts[("sparseopt_edu/train/engine.py", 421, "_flush_topology")].why
    lines = sc.report(list(verdicts.values()), steps=200, updates=5)
    assert "not allowed: 10 (2.00 per update) at 2 site(s)" in lines[-1]
    assert any(line.lstrip().startswith("BAD") and "1.00/update" in line for line in lines)


def test_syncs_in_the_eager_step_or_the_step_fail():
    for chain in (["train_step", "_eager", "__call__", "_train_step", "iterate"],  # warm-up/eager update step
                  ["item", "step", "_train_step", "iterate"],  # the optimizer's or DST's step
                  ["write_lr", "_train_step", "iterate"],  # the LR written into the optimizer
                  ["skew_table", "_train_step", "iterate"]):  # the skew metrics of an update step
        v = sc.judge(("x.py", 1, chain[0]), 3, chain, UNITS)
        assert not v.allowed, chain


def test_a_site_that_syncs_once_needs_a_justified_caller():
    """Syncing once used to be enough; a once-per-run sync outside any justified place now fails too."""
    v = sc.judge(("sparseopt_edu/x.py", 9, "helper"), 1, ["helper", "_load_data", "somewhere"], UNITS)
    assert not v.allowed and "no justified caller" in v.why
    assert sc.judge(("m.py", 3, "__init__"), 1, ["__init__"], UNITS).allowed
    assert sc.judge(("g.py", 3, "_capture"), 2, ["_capture", "__call__", "_train_step"], UNITS).allowed  # capture


def test_a_justified_place_that_syncs_per_step_is_over_budget():
    """A sync inside _end_epoch that fires 200 times in 2 epochs is a per-step sync, whatever its caller."""
    v = sc.judge(("e.py", 5, "_end_epoch"), 200, ["_end_epoch", "iterate", "run"], UNITS)
    assert not v.allowed and "over its budget" in v.why
    v = sc.judge(("e.py", 6, "_log_step"), 3, ["_log_step", "iterate"], sc.units(epochs=2, log_steps=0, captures=0))
    assert not v.allowed  # no logging step ran: a sync there cannot be per logging step
    assert sc.judge(("e.py", 6, "_log_step"), 4, ["_log_step", "iterate"],
                    sc.units(epochs=2, log_steps=2, captures=0)).allowed


def test_recorder_keeps_this_repository_frames_innermost_first(tmp_path):
    root = str(tmp_path)
    stack = [traceback.FrameSummary("/usr/lib/python3/runpy.py", 1, "_run_code", line=""),
             traceback.FrameSummary(f"{root}/benchmarks/sync_check.py", 2, "main", line=""),
             traceback.FrameSummary(f"{root}/sparseopt_edu/train/engine.py", 10, "iterate", line=""),
             traceback.FrameSummary(f"{root}/sparseopt_edu/train/engine.py", 20, "_train_step", line=""),
             traceback.FrameSummary("/venv/torch/optim/sgd.py", 30, "step", line="")]
    rec = sc.Recorder(root)
    rec.add(stack)
    rec.add(stack)
    rec.add(stack[:2])  # only the checker's own frame: not a site
    key = ("sparseopt_edu/train/engine.py", 20, "_train_step")
    assert dict(rec.sites) == {key: 2} and rec.chains[key] == ["_train_step", "iterate"]
