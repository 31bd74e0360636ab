"""Runs interleaved on one device: same results as one after the other, in order; failures surface."""
import pytest

from sparseopt_edu.train import TrainConfig
from sparseopt_edu.train.concurrent import can_overlap, run_concurrently


def tiny(seed, **kw):
    base = dict(model="mlp", dataset="digits", hidden=32, sparsity=0.8, method="rigl", batch_size=64, epochs=2,
                delta_t=5, n_train=640, n_test=128, device="cpu", progress=False, seed=seed)
    base.update(kw)
    return TrainConfig(**base)


def test_interleaved_runs_equal_sequential_and_keep_order():
    configs = [tiny(0), tiny(1, sparseopt=False), tiny(2, method="set"), tiny(3, method="dense")]
    done = []
    sequential = run_concurrently(configs, parallel=1)
    pooled = run_concurrently(configs, parallel=3, interleave=True, on_done=lambda i, h: done.append(i))
    assert sorted(done) == [0, 1, 2, 3]
    for a, b in zip(sequential, pooled):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]  # bitwise, in job order
        assert a["config"]["seed"] == b["config"]["seed"]
    assert len(pooled[0]["topology"]) > 0


def test_failing_run_is_reported_after_the_others_finish():
    configs = [tiny(0), tiny(1, dataset="cifar10", data_root="/nonexistent"), tiny(2)]
    done = []
    with pytest.raises(RuntimeError, match="run 2 of 3 failed"):
        run_concurrently(configs, parallel=2, interleave=True, on_done=lambda i, h: done.append(i))
    assert sorted(done) == [0, 2]


def test_cpu_runs_do_not_overlap_by_default():
    assert not can_overlap(tiny(0))



def test_ctrl_c_inside_one_run_stops_all_and_keeps_their_records(tmp_path):
    from sparseopt_edu.train import Trainer

    configs = [tiny(s, run_dir=str(tmp_path / f"run{s}"), epochs=6) for s in range(3)]
    calls = {"n": 0}
    original = Trainer._train_step

    def interrupting(self, batch):  # the 25th step of all runs together is hit by Ctrl-C
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return original(self, batch)

    Trainer._train_step = interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            run_concurrently(configs, parallel=2, interleave=True)
    finally:
        Trainer._train_step = original
    import json

    reasons = sorted(json.loads((tmp_path / d / "history.json").read_text())["reason"] for d in ("run0", "run1"))
    assert reasons == ["interrupted", "stopped"]  # the hit run and the other active one both wrote their records
    assert not (tmp_path / "run2").exists()  # the pending run never started


def test_ctrl_c_one_after_the_other_starts_no_more_runs(tmp_path):
    from sparseopt_edu.train import Trainer

    configs = [tiny(s, run_dir=str(tmp_path / f"run{s}")) for s in range(3)]
    original = Trainer._train_step

    def interrupting(self, batch):
        if self.config.seed == 1 and self.step == 3:
            raise KeyboardInterrupt
        return original(self, batch)

    Trainer._train_step = interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            run_concurrently(configs, parallel=1)
    finally:
        Trainer._train_step = original
    assert (tmp_path / "run1" / "history.json").exists() and not (tmp_path / "run2").exists()


def test_compiled_gpu_runs_interleave_too(monkeypatch):
    """compile no longer sends a GPU grid to one process per run (each compiling for minutes): the runs share
    the first run's compiled code, so they interleave like any other GPU runs."""
    import torch

    from sparseopt_edu.train import concurrent

    monkeypatch.setattr(concurrent, "resolve_device", lambda name: torch.device("cuda"))
    assert concurrent.can_overlap(tiny(0, compile=True)) and concurrent.can_overlap(tiny(0))


def test_ctrl_c_during_a_runs_closing_writes_keeps_its_records_and_row(tmp_path, monkeypatch):
    """A Ctrl-C that lands while a finished run writes its records waits for them: history.json says "done", the
    grid reports the run's row, then the Ctrl-C stops the grid (the next run never starts). Before, the
    KeyboardInterrupt cut the writes and the row was never reported."""
    import json
    import os
    import signal
    import time

    from sparseopt_edu.train import engine

    real = engine.write_records
    calls = []

    def ctrl_c_then_write(run_dir, config, history):
        if history.reason == "done":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, just as the closing writes begin
            time.sleep(0.05)  # a handler runs here, between bytecodes: without the hold it raised before the write
        real(run_dir, config, history)
        calls.append(history.reason)

    monkeypatch.setattr(engine, "write_records", ctrl_c_then_write)
    configs = [tiny(s, epochs=1, run_dir=str(tmp_path / f"run{s}")) for s in range(2)]
    done = []
    with pytest.raises(KeyboardInterrupt):
        run_concurrently(configs, parallel=1, on_done=lambda i, h: done.append((i, h["reason"])))
    assert done == [(0, "done")] and calls[-1] == "done"  # the closing write happened
    assert json.loads((tmp_path / "run0" / "history.json").read_text())["reason"] == "done"
    assert not (tmp_path / "run1").exists()  # the grid stopped before the next run
