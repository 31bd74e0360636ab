"""The training engine on CPU with tiny configs: learning, events, stop, resume (exact), NaN, config."""
from __future__ import annotations

import json
import math

import pytest
import torch

from sparseopt_edu.train import History, Recorder, RunControl, TrainConfig, Trainer, train
from sparseopt_edu.train.events import EPOCH_KEYS


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is much faster on a busy 2-core machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = {"model": "mlp", "dataset": "digits", "hidden": 64, "sparsity": 0.9, "batch_size": 64, "epochs": 2, "lr": 0.05,
            "delta_t": 5, "log_every": 5, "progress": False}


def tiny(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, **kw})


@pytest.mark.parametrize("method,sparseopt", [("dense", False), ("rigl", False), ("rigl", True)])
def test_loss_decreases_on_digits(method, sparseopt):
    history = train(tiny(method=method, sparseopt=sparseopt, epochs=3))
    assert history.reason == "done"
    assert len(history.epoch) == 3
    assert history.train_loss[-1] < 0.6 * history.train_loss[0]
    assert history.step_log[-1]["loss"] < history.step_log[0]["loss"]
    assert history.test_acc[-1] > 0.8


def test_masks_stay_exact_and_optimizer_kinds():
    t = Trainer(tiny(method="rigl", sparseopt=False))
    t.run()
    assert type(t.optimizer).__name__ == "SparseOpt" and t.optimizer.enabled is False
    assert t.masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
    assert abs(t.masks.sparsity() - 0.9) < 1e-3
    assert isinstance(Trainer(tiny(method="dense")).optimizer, torch.optim.SGD)


def test_events_order_and_keys():
    rec = Recorder()
    t = Trainer(tiny(method="rigl"), callbacks=[rec])
    h = t.run()
    kinds = rec.kinds()
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("start") == kinds.count("end") == 1
    assert kinds.count("epoch") == 2
    assert set(rec.of("start")[0].data) >= {"config", "device", "params", "sparsity"}
    assert set(rec.of("step")[0].data) >= {"loss", "lr", "images_per_s"}
    topo = rec.of("topology")
    assert topo, "RigL with delta_t=5 must update the topology"
    for e in topo:
        assert set(e.data) >= {"itop", "changed", "slope_raw", "slope_corrected", "rotation_deg", "fan_in_cv"}
        assert e.step % 5 == 0 and e.run is None and not hasattr(e, "trainer")  # events carry data only
        assert isinstance(e.data["slope_raw"], float) and e.data["rotation_deg"] > 0
    assert [e.step for e in topo] == [r["step"] for r in h.topology]
    assert topo[-1].data["itop"] > topo[0].data["itop"] > 0.1
    assert set(rec.of("epoch")[0].data) >= set(EPOCH_KEYS)
    end = rec.of("end")[0].data
    assert end["reason"] == "done" and end["history"] is h
    # steps are increasing across events, and each epoch event follows its steps
    steps = [e.step for e in rec.events]
    assert steps == sorted(steps)


def test_request_stop_mid_run():
    control = RunControl()

    def stopper(event):
        if event.kind == "step" and event.step >= 10:
            control.stop()

    rec = Recorder()
    t = Trainer(tiny(method="rigl", epochs=5), callbacks=[stopper, rec], control=control)
    h = t.run()
    assert h.reason == "stopped" and t.step == 10
    assert rec.of("end")[0].data["reason"] == "stopped"
    assert len(h.epoch) == 0  # stopped inside epoch 1 (22 steps per epoch)


def test_set_lr_applies_between_steps():
    control = RunControl()

    def steer(event):
        if event.kind == "step" and event.step == 5:
            control.set_lr(0.01)

    h = Trainer(tiny(method="dense", schedule="constant", epochs=1), callbacks=[steer], control=control).run()
    assert h.step_log[0]["lr"] == pytest.approx(0.05) and h.step_log[1]["lr"] == pytest.approx(0.01)


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("stop_at", [("epoch", 1), ("step", 13)])
def test_resume_equals_uninterrupted(tmp_path, stop_at):
    cfg = {"method": "rigl", "sparseopt": True, "epochs": 3, "delta_t": 7, "checkpoint_every_epochs": 1}
    full = Trainer(tiny(**cfg, run_dir=str(tmp_path / "full")))
    h_full = full.run()

    kind, at = stop_at

    control = RunControl()

    def stopper(event):
        if event.kind == kind and (event.epoch if kind == "epoch" else event.step) >= at:
            control.stop()

    part = Trainer(tiny(**cfg, run_dir=str(tmp_path / "part")), callbacks=[stopper], control=control)
    assert part.run().reason == "stopped"
    assert 0 < part.step < full.step
    for name in ("config.json", "history.json", "history.csv", "checkpoint.pt"):
        assert (tmp_path / "part" / name).is_file()

    resumed = Trainer.resume(tmp_path / "part")
    assert resumed.step == part.step
    h_res = resumed.run()
    assert h_res.reason == "done" and resumed.step == full.step
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for name in full.masks:
        assert torch.equal(full.masks[name], resumed.masks[name])
    assert full.dst.state_dict()["updates"] == resumed.dst.state_dict()["updates"]
    assert h_full.without_wall_clock() == h_res.without_wall_clock()
    # the resumed run can also be started through the config switch
    again = Trainer(tiny(**cfg, run_dir=str(tmp_path / "part"), resume=True))
    assert again.step == full.step


def test_nan_stops_and_keeps_files(tmp_path):
    control = RunControl()

    def explode(event):
        if event.kind == "epoch" and event.epoch == 1:
            control.set_lr(1e30)

    run_dir = tmp_path / "nan"
    rec = Recorder()
    h = Trainer(tiny(method="rigl", norm="none", epochs=4, schedule="constant", run_dir=str(run_dir)),
                callbacks=[explode, rec], control=control).run()
    assert h.reason == "nan" and rec.of("end")[0].data["reason"] == "nan"
    assert len(h.epoch) == 1
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert saved["loop"]["epoch"] == 1  # the last good checkpoint, not the NaN state
    on_disk = History.from_json(str(run_dir / "history.json"))
    assert on_disk.reason == "nan" and on_disk.train_loss == h.train_loss
    assert (run_dir / "history.csv").read_text().splitlines()[0].split(",") == list(EPOCH_KEYS)


def test_keyboard_interrupt_keeps_results(tmp_path):
    def ctrl_c(event):
        if event.kind == "step" and event.step >= 30:
            raise KeyboardInterrupt

    h = train(tiny(method="dense", epochs=3, run_dir=str(tmp_path / "r")), callbacks=[ctrl_c])
    assert h.reason == "interrupted" and len(h.epoch) == 1
    assert json.loads((tmp_path / "r" / "history.json").read_text())["reason"] == "interrupted"
    assert (tmp_path / "r" / "checkpoint.pt").is_file()


def test_steps_override_epochs_and_partial_epoch():
    h = train(tiny(method="static", steps=30))
    assert h.reason == "done" and len(h.epoch) == 2 and h.topology == []


def test_config_json_round_trip(tmp_path):
    cfg = tiny(dense_layers=("head",), data_kwargs={"size": 8}, t_end_steps=300, method="srigl", optimizer="adamw")
    text = cfg.to_json()
    back = TrainConfig.from_json(text)
    assert back == cfg and back.dense_layers == ("head",) and back.t_end_steps == 300
    path = tmp_path / "c.json"
    cfg.to_json(path)
    assert TrainConfig.from_json(str(path)) == cfg
    assert TrainConfig.from_dict(json.loads(text)) == cfg


@pytest.mark.parametrize("changes,message", [
    ({"sparsity": 1.2}, "sparsity must be in [0.0, 1.0), got 1.2"),
    ({"method": "rigl2"}, "method must be one of dense, static, set, rigl, srigl, got 'rigl2'"),
    ({"lr": -1}, "lr must be in"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"dataset": "imagenet"}, "dataset must be one of"),
    ({"method": "rigl", "sparsity": 0.0}, "needs sparsity > 0"),
    ({"resume": True}, "resume=True needs run_dir"),
    ({"amp": "yes"}, "amp must be one of auto, True, False"),
])
def test_config_validation_errors(changes, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{**TINY, **changes})
    assert message in str(err.value)


def test_config_unknown_field_suggests():
    with pytest.raises(ValueError, match=r"unknown config field\(s\): 'sparsty' \(did you mean 'sparsity'\?\)"):
        TrainConfig.from_dict({"sparsty": 0.9})
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainConfig.from_json("{nope")


def test_batch_larger_than_data_is_a_clear_error():
    with pytest.raises(ValueError, match="larger than the training set"):
        Trainer(tiny(n_train=32, batch_size=64))


def test_lr_schedules():
    from sparseopt_edu.train import LRSchedule

    s = LRSchedule("cosine", 0.1, 100, warmup_steps=10)
    assert s.lr_at(0) == pytest.approx(0.01) and s.lr_at(9) == pytest.approx(0.1) and s.lr_at(100) == pytest.approx(0)
    st = LRSchedule("step", 1.0, 100)
    assert [st.lr_at(t) for t in (0, 50, 75)] == pytest.approx([1.0, 0.1, 0.01])


def test_skew_table_matches_a_per_layer_reference():
    """diagnostics.skew_table (all layers at once, what the trainer records) against a plain per-layer
    computation: the fitted slope of log mean |grad| per live weight on log density, and the raw/corrected angle."""
    from sparseopt_edu import diagnostics

    t = Trainer(tiny(method="rigl", model="mlp", depth=2, epochs=1, delta_t=10))
    t.run()
    x, y = next(iter(t.train_loader))
    t.optimizer.zero_grad()
    torch.nn.functional.cross_entropy(t.model(x), y).backward()
    table = diagnostics.skew_table(t.masks).tolist()
    for (slope_raw, slope_corrected, distinct, angle), (name, m) in zip(table, t.masks.modules.items()):
        mask = m.weight_mask.flatten(1).double()
        live = mask.sum(1)
        g = (m.weight.grad.flatten(1).double().abs() * mask).sum(1) / live.clamp_min(1)
        scale = (live / live[live > 0].mean()).sqrt()
        density = live / mask.shape[1]
        assert slope_raw == pytest.approx(diagnostics.fit_loglog_slope(density, g), rel=1e-9), name
        assert slope_corrected == pytest.approx(diagnostics.fit_loglog_slope(density, g * scale), rel=1e-9), name
        assert distinct == len(set(live[live > 0].tolist())), name
        gm = m.weight.grad.flatten(1).double() * mask
        corrected = gm * scale[:, None]
        cos = (gm * corrected).sum() / (gm.norm() * corrected.norm())
        assert angle == pytest.approx(math.degrees(math.acos(min(1.0, float(cos)))), rel=1e-6, abs=1e-6), name
    summary = diagnostics.skew_summary(table)
    assert summary["rotation_deg"] == pytest.approx(sum(r[3] for r in table) / len(table))
    assert summary["rotation_deg"] == pytest.approx(
        sum(diagnostics.rotation_angles(t.masks).values()) / len(table))


def test_deferred_topology_events_equal_immediate_ones():
    """On a GPU the trainer defers each update's checks and its "topology" event to the next logging step or the
    epoch's end: the events must be the same ones, stamped with the update's own step, in order."""
    def run(defer):
        events = []
        trainer = Trainer(tiny(method="rigl", log_every=7, epochs=2),
                          callbacks=[lambda e: events.append((e.kind, e.step, e.epoch, e.data))])
        trainer.dst.defer_checks = defer
        history = trainer.run()
        return [e for e in events if e[0] == "topology"], history

    (now, h_now), (later, h_later) = run(False), run(True)
    assert len(now) >= 5 and [e[1] for e in now] == [u["step"] for u in h_now.topology]
    assert now == later
    assert h_now.topology == h_later.topology and h_now.train_loss == h_later.train_loss
    assert all(e[1] % 5 == 0 for e in later)  # delta_t=5: stamped with the update step, not the flush step


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_step_with_gradients_set_to_none_trains_exactly_like_zeroed_ones(optimizer):
    """The step CUDA graphs capture sets gradients to None (backward writes them instead of adding to zeros):
    the same weights, bit for bit, step after step, and the pruned weights and their state stay exactly 0."""
    from sparseopt_edu.train.step import StepSums, make_loss_fn, make_train_step

    def trained(grads_to_none: bool):
        trainer = Trainer(TrainConfig(model="mlp", dataset="digits", hidden=32, sparsity=0.8, method="rigl",
                                      optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3,
                                      batch_size=64, epochs=1, n_train=640, n_test=64, device="cpu",
                                      progress=False, seed=0))
        step = make_train_step(make_loss_fn(trainer.model, amp=False), trainer.optimizer, StepSums("cpu"),
                               grads_to_none=grads_to_none)
        for x, y in list(trainer.train_loader)[:6]:
            step(x, y)
        return trainer

    zeroed, to_none = trained(False), trained(True)
    for a, b in zip(zeroed.model.parameters(), to_none.model.parameters()):
        assert torch.equal(a, b)
    assert to_none.masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
