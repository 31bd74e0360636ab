"""Runs sharing a device through the thread pool: same results as one after the other, errors surface."""
import pytest

from sparseopt_edu.train import TrainConfig
from sparseopt_edu.train.concurrent import can_overlap, run_concurrently


def tiny(seed, **kw):
    base = dict(model="mlp", dataset="digits", hidden=32, sparsity=0.8, method="rigl", batch_size=64, epochs=2,
                delta_t=5, n_train=640, n_test=128, device="cpu", progress=False, seed=seed)
    base.update(kw)
    return TrainConfig(**base)


def test_thread_pool_equals_sequential_and_keeps_order():
    configs = [tiny(0), tiny(1, sparseopt=False), tiny(2, method="set"), tiny(3, method="dense")]
    done = []
    sequential = run_concurrently(configs, parallel=1)
    pooled = run_concurrently(configs, parallel=3, threads=True, on_done=lambda i, h: done.append(i))
    assert sorted(done) == [0, 1, 2, 3]
    for a, b in zip(sequential, pooled):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]  # bitwise, in job order
        assert a["config"]["seed"] == b["config"]["seed"]
    assert len(pooled[0]["topology"]) > 0


def test_failing_run_is_reported_after_the_others_finish():
    configs = [tiny(0), tiny(1, dataset="cifar10", data_root="/nonexistent"), tiny(2)]
    done = []
    with pytest.raises(RuntimeError, match="run 2 of 3 failed"):
        run_concurrently(configs, parallel=2, threads=True, on_done=lambda i, h: done.append(i))
    assert sorted(done) == [0, 2]


def test_cpu_runs_do_not_overlap_by_default():
    assert not can_overlap(tiny(0))


def test_capture_gate_is_exclusive_and_two_capturers_do_not_deadlock():
    import threading
    import time

    from sparseopt_edu.train.graphs import CaptureGate

    gate = CaptureGate()
    inside = []  # ("shared" | "capture", thread, event)
    lock = threading.Lock()
    errors = []

    def log(kind, what):
        with lock:
            inside.append((kind, threading.current_thread().name, what))

    together = threading.Barrier(4, timeout=10)

    def run(capture_at):
        try:
            for step in range(30):
                with gate.shared():
                    log("shared", "in")
                    if step == capture_at:  # all four inside a step, then all want to capture at once
                        together.wait()
                        with gate.exclusive():
                            log("capture", "in")
                            time.sleep(0.01)
                            log("capture", "out")
                    time.sleep(0.001)
                    log("shared", "out")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(3,), name=f"t{i}", daemon=True) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=20)
    assert not any(th.is_alive() for th in threads), "deadlock: a thread never finished"
    assert not errors
    # inside a capture window, nothing happens in any other thread (runs waiting to capture are paused too)
    capturing = None
    for kind, name, what in inside:
        if kind == "capture":
            capturing = name if what == "in" else None
        else:
            assert capturing in (None, name), f"{name} worked while {capturing} captured"
    assert sum(1 for k, _, w in inside if k == "capture" and w == "in") == 4
