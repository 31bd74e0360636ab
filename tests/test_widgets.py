"""Widget controllers and panels without a kernel: set traits, click buttons from Python, check requests and runs."""
from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

import ipywidgets as W  # noqa: E402

from sparseopt_edu.widgets import Controller, RacePanel, RaceState, SkewPanel, SkewState, pick_mode  # noqa: E402
from sparseopt_edu.widgets.base import MODE_TEXT, TrainingPanel  # noqa: E402
from sparseopt_edu.widgets.controller import Throttle, detect_frontend  # noqa: E402


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("SPARSEOPT_EDU_FAST", "1")
    for var in ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "VOILA_SERVER_URL", "VOILA_APP_PORT", "VOILA_PREHEAT",
                "VSCODE_PID", "VSCODE_CWD", "COLAB_RELEASE_TAG"):
        monkeypatch.delenv(var, raising=False)


def tiny_race(**kw) -> RaceState:
    base = dict(seeds=1, epochs=2, delta_t=5, hidden=32, log_every=2, method="static")
    base.update(kw)
    return RaceState(**base)


def tiny_skew() -> SkewState:
    return SkewState(seeds=1, n_samples=128, hidden=32, neurons=32)


# ----- controller ---------------------------------------------------------------------------------------------
def test_controller_requests_and_claim():
    c = Controller()
    assert not c.stop_requested
    c.set_param("lr", 0.5, structural=False)
    assert not c.stop_requested  # live params never interrupt
    assert c.peek_live(("lr",)) == {"lr": 0.5}
    c.set_param("norm", "none", structural=True)
    assert c.stop_requested
    c.request_start()
    req = c.take()
    assert req.start and req.structural and req.params == {"norm": "none"}
    assert c.take().empty
    assert c.claim() and not c.claim()
    c.request_start()
    assert not c.release()  # a request arrived: keep serving
    c.take()
    assert c.release() and not c.serving
    assert c.log[0] == ("set", "lr", 0.5)


def test_controller_is_thread_safe():
    c = Controller()

    def writer(i):
        for j in range(200):
            c.set_param(f"p{i}", j, structural=False)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.take().params == {f"p{i}": 199 for i in range(4)}
    assert len(c.log) == 800


def test_controller_has_no_dead_methods():
    """Every public method or property of the Controller is used by the panels (``wait`` was not: removed)."""
    import re
    from pathlib import Path

    import sparseopt_edu

    src = "\n".join(p.read_text() for p in Path(sparseopt_edu.__file__).parent.rglob("*.py"))
    public = [n for n in vars(Controller) if not n.startswith("_")]
    unused = [n for n in public if not re.search(rf"controller\.{n}\b", src)]
    assert not unused and "wait" not in public, f"Controller members no panel uses: {unused or ['wait']}"


def test_throttle_limits_rate():
    th = Throttle(5.0)
    assert th.ready() and not th.ready()


def test_mode_detection(monkeypatch):
    assert detect_frontend() == "jupyterlab" and pick_mode("auto") == "blocking"
    monkeypatch.setenv("VOILA_KERNEL_ID", "abc")
    assert detect_frontend() == "voila" and pick_mode("auto") == "thread"
    assert pick_mode("blocking") == "blocking"
    with pytest.raises(ValueError, match="mode must be one of"):
        pick_mode("async")


# ----- SkewPanel ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["blocking", "thread"])
def test_skew_panel_slider_and_norm(mode):
    panel = SkewPanel(tiny_skew(), mode=mode)
    assert "ratio at s=0.90" in panel.figure.layout.title.text
    assert panel.controls["sparsity"].continuous_update is False
    panel.controls["sparsity"].value = 0.5
    panel.wait(60)
    assert panel.state.sparsity == 0.5 and "ratio at s=0.50" in panel.figure.layout.title.text
    assert 0.5 in panel.figure.data[1].x
    panel.controls["norm"].value = "none"
    panel.wait(60)
    ratio = panel.model.ratio(0.5, "none")["ratio"]
    assert abs(ratio - 1) < 0.2
    assert "no norm" in panel.figure.layout.title.text and len(panel.figure.data[2].x) == 0
    assert ("set", "norm", "none") in panel.controller.log
    # A panel without a run says what its controls do, in a learner's words, and nothing about threads or runs.
    from sparseopt_edu.widgets.base import MODE_TEXT

    assert panel.status.value.endswith(f"· {MODE_TEXT['recompute']}</code>"), panel.status.value
    for internal in ("mode:", "thread", "blocking", "run()", "Start", "["):
        assert internal not in panel.status.value, (internal, panel.status.value)
    assert "restarts the run" not in panel.legend().value and "recomputes the figure" in panel.legend().value


@pytest.mark.parametrize("mode", ["blocking", "thread"])
def test_training_panel_status_says_what_the_buttons_do(mode):
    from sparseopt_edu.widgets.base import MODE_TEXT

    panel = RacePanel(tiny_race(), mode=mode)
    expected = {"blocking": "press Start to train, Stop to end a run",
                "thread": "press Start to train, Stop to end a run; the notebook stays free meanwhile"}[mode]
    assert MODE_TEXT[mode] == expected
    assert panel.status.value.endswith(f"· {expected}</code>"), panel.status.value
    for internal in ("mode:", "thread", "blocking", "run()", "["):
        assert internal not in panel.status.value, (internal, panel.status.value)
    assert "restarts the run" in panel.legend().value


def test_training_panels_route_their_controls_to_the_frontends_subshell(monkeypatch):
    """Issue 16 item 3: ipykernel 7.4 sends a comm's incoming messages to the shell that last published on it (the
    busy main shell, for a widget a cell made), so a Stop click waited for the training cell. A training panel's
    buttons and controls go to the subshell the front end chose; a panel without a run keeps ipykernel's rule."""
    import comm
    from ipykernel.comm.comm import BaseComm

    if not hasattr(BaseComm, "_reply_subshell_for"):
        pytest.skip("this ipykernel has no comm re-route (older than 7.4): nothing to undo")
    monkeypatch.setattr(comm, "create_comm", lambda **kw: BaseComm(**kw))  # the kernel's comms, no kernel needed
    race = RacePanel(tiny_race(), mode="blocking")
    skew = SkewPanel(tiny_skew())
    click = {"method": "custom", "content": {"event": "click"}}
    for widget in [*race.buttons.values(), *race.controls.values()]:
        widget.comm._reply_subshell_id = None  # what ipykernel records when a cell (the main shell) publishes
        assert widget.comm._reply_subshell_for(click, "subshell-1") == "subshell-1", widget
    plain = skew.controls["norm"].comm
    plain._reply_subshell_id = None
    assert plain._reply_subshell_for(click, "subshell-1") is None  # ipykernel's own rule: the main shell


# ----- RacePanel ------------------------------------------------------------------------------------------------
def test_race_blocking_run_draws_both_arms():
    panel = RacePanel(tiny_race(), mode="blocking")
    panel.run()
    s = panel.summary()
    assert s["done_pairs"] == 1 and len(panel.runs_done) == 2
    loss_traces = [panel._trace(1, on, 2) for on in (False, True)]
    assert all(len(t.x) > 0 for t in loss_traces)
    assert [t.name for t in loss_traces] == ["SGD (baseline)", "SparseOpt+SGD"]
    assert "done" in panel.status.value and panel.status.value.endswith(MODE_TEXT["blocking"] + "</code>")


def test_race_thread_mode_stop_change_optimizer_restart():
    panel = RacePanel(tiny_race(epochs=30), mode="thread")
    panel.buttons["start"].click()
    deadline = time.monotonic() + 60
    while panel.step < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    panel.buttons["stop"].click()
    panel.wait(60)
    assert not panel.running and "stopped" in panel.status.value
    assert panel.runs_done[-1][1] == "stopped"
    panel.controls["optimizer"].value = "adam"  # structural, while idle: applied, no run
    assert panel.state.optimizer == "adam" and not panel.running
    panel.set(seeds=1)
    state = panel.state
    panel.state = RaceState(**{**state.__dict__, "epochs": 1})
    panel.buttons["start"].click()
    panel.wait(120)
    assert panel._trace(1, True, 2).name == "SparseOpt+Adam" and len(panel._trace(1, True, 2).x) > 0
    assert panel.runs_done[-1][0]["optimizer"] == "adam"
    assert [e[0] for e in panel.controller.log] == ["start", "stop", "set", "start"]


def test_race_lr_rule_in_one_place():
    """Adam's lr / 10: the configs and the live LR come from one function (race.trainer_lr)."""
    from sparseopt_edu.widgets.race import trainer_lr

    assert trainer_lr("sgd", 0.1) == 0.1 and trainer_lr("adam", 0.1) == pytest.approx(0.01)
    for optimizer in ("sgd", "adam"):
        state = tiny_race(optimizer=optimizer, lr=0.05, seeds=2)
        assert {cfg["lr"] for cfg in state.configs()} == {trainer_lr(optimizer, 0.05)}


def test_panel_states_take_the_library_defaults():
    """Item 4 of issue 15: a panel field is TrainConfig's default unless the panel names its own reason."""
    from sparseopt_edu.train import TrainConfig
    from sparseopt_edu.widgets.dst import DSTState

    own = {RaceState: {"seeds", "epochs", "delta_t", "log_every", "min_race_s"},
           DSTState: {"sparseopt", "delta_t", "dataset", "log_every"}}
    for cls, panel_choices in own.items():
        for f in dataclasses.fields(cls):
            if f.name not in panel_choices:
                assert f.default == getattr(TrainConfig(), f.name), (cls.__name__, f.name)


class TrainerSpy:
    """Wraps the panel's ``make_trainer``: keeps every trainer it built and, at each step event, the LR the
    optimizer really holds (``param_groups``), and wakes waiters through one condition (no sleeps)."""

    def __init__(self, monkeypatch):
        from sparseopt_edu.widgets import race

        self.cond = threading.Condition()
        self.trainers: list = []
        self.steps: list[tuple] = []  # (trainer index, step, optimizer lr, schedule factor at that step)
        real = race.make_trainer

        def make(cfg, callbacks, control=None):
            index = len(self.trainers)
            trainer = real(cfg, [*callbacks, lambda ev: self._record(index, ev)], control)
            with self.cond:
                self.trainers.append((cfg, trainer))
                self.cond.notify_all()
            return trainer

        monkeypatch.setattr(race, "make_trainer", make)

    def _record(self, index, ev):
        if ev.kind != "step":
            return
        trainer = self.trainers[index][1]  # events carry data only: the spy keeps the trainers it built
        lr = float(trainer.optimizer.param_groups[0]["lr"])
        with self.cond:
            self.steps.append((index, ev.step, lr, trainer.lr_schedule.factor(ev.step - 1)))
            self.cond.notify_all()

    def wait_for(self, predicate, what: str, timeout: float = 60.0):
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), f"timed out waiting for {what}"


def test_race_live_lr_and_structural_restart(monkeypatch):
    spy = TrainerSpy(monkeypatch)
    panel = RacePanel(tiny_race(epochs=40), mode="thread")
    panel.buttons["start"].click()
    spy.wait_for(lambda: len(spy.steps) >= 2, "two training steps")
    with spy.cond:
        first = list(spy.steps)
    assert all(lr == pytest.approx(0.1 * f, rel=1e-3) for _, _, lr, f in first), first  # base lr 0.1 so far
    n_seen = len(first)
    panel.controls["lr"].value = 0.02  # live: no restart; the running optimizer's LR must follow
    # Later steps of the same trainer: the optimizer's LR is the new base (0.02) times the cosine factor.
    spy.wait_for(lambda: any(i == 0 and lr == pytest.approx(0.02 * f, rel=1e-3)
                             for i, _, lr, f in spy.steps[n_seen:]), "the optimizer's lr to become 0.02 x factor")
    assert panel.running and panel.state.lr == pytest.approx(0.02)
    assert len(spy.trainers) == 2, "a live change must not restart the run (one trainer per arm)"
    # both arms run side by side: the change reaches them at the same step (the race treats them alike)
    spy.wait_for(lambda: any(i == 1 and lr == pytest.approx(0.02 * f, rel=1e-3)
                             for i, _, lr, f in spy.steps[n_seen:]), "the other arm's lr to follow too")
    with spy.cond:
        changed = {i: min(step for j, step, lr, f in spy.steps if j == i and lr == pytest.approx(0.02 * f, rel=1e-3))
                   for i in (0, 1)}
    assert changed[0] == changed[1], changed  # one handle, committed between rounds: the same step
    panel.controls["norm"].value = "none"  # structural: the running race restarts with it
    spy.wait_for(lambda: any(cfg["norm"] == "none" for cfg, _ in spy.trainers), "a restart with norm none")
    restarted = next(t for cfg, t in spy.trainers if cfg["norm"] == "none")
    assert restarted.lr_schedule.base_lr == pytest.approx(0.02)  # the restart keeps the live LR
    panel.buttons["stop"].click()
    panel.wait(120)
    norms = [cfg["norm"] for cfg, _ in panel.runs_done]
    assert norms[0] == "bn" and "none" in norms


# ----- DSTPanel ---------------------------------------------------------------------------------------------
def test_dst_panel_redraws_at_every_topology_update(monkeypatch):
    """A topology update is drawn when it arrives, not only when the step-rate throttle happens to be ready."""
    from sparseopt_edu.widgets import DSTPanel, DSTState

    state = DSTState.default(dataset="digits", epochs=1, n_train=1024, n_test=128, hidden=32, delta_t=2,
                             batch_size=64, log_every=2)
    panel = DSTPanel(state, mode="blocking")
    panel.throttle = Throttle(1e-6)  # step-rate redraws: the first only
    panel.topology_throttle = Throttle(1e9)  # redraws at updates: every one
    drawn = []
    real_flush = panel._flush
    monkeypatch.setattr(panel, "_flush", lambda: (drawn.append(len(panel.updates)), real_flush())[1])
    panel.run()
    n = len(panel.updates)
    assert n >= 3 and set(range(1, n + 1)) <= set(drawn), (n, drawn)


def test_race_reset_clears_curves():
    panel = RacePanel(tiny_race(), mode="blocking")
    panel.run()
    assert len(panel._trace(1, False, 2).x) > 0
    panel.buttons["reset"].click()
    assert len(panel._trace(1, False, 2).x) == 0 and "reset" in panel.status.value


def test_a_structural_change_while_idle_says_the_figure_shows_the_old_run():
    panel = RacePanel(tiny_race(), mode="blocking")
    panel.run()
    assert "done" in panel.status.value and "not run yet" not in panel.status.value
    panel.controls["norm"].value = "none"  # idle: no restart, the figure keeps the BatchNorm run
    status = panel.status.value
    assert "new settings not run yet" in status and "norm bn" in status and "norm none" in status
    panel.controls["norm"].value = "bn"  # back to what the figure shows: nothing stale any more
    assert "not run yet" not in panel.status.value
    panel.buttons["reset"].click()
    panel.controls["norm"].value = "none"
    assert "not run yet" not in panel.status.value  # after a reset the figure shows no run


def test_wait_does_not_reraise_an_error_of_an_earlier_run(monkeypatch):
    panel = RacePanel(tiny_race(), mode="thread")
    real_train = panel._train
    calls = {"n": 0}

    def failing_once():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first run broke")
        return real_train()

    monkeypatch.setattr(panel, "_train", failing_once)
    panel.run()
    with pytest.raises(RuntimeError, match="first run broke"):
        panel.wait(timeout=60)
    panel.buttons["start"].click()  # a later run that succeeds
    panel.wait(timeout=120)  # used to raise the first run's error again
    assert panel.error is None and "done" in panel.status.value


def test_skew_panel_slope_is_the_check_cells_measurement_and_follows_seeds():
    from sparseopt_edu import diagnostics
    from sparseopt_edu.widgets.skew import SkewModel

    for seeds in (1, 3):
        model = SkewModel(SkewState(seeds=seeds, n_samples=128, hidden=32))
        check = diagnostics.skew_slope(fan_in=64, norm="bn", seeds=seeds)  # what notebook 02's check cell prints
        assert model.scatter("bn")["slope_raw"] == pytest.approx(check["slope_raw"], abs=1e-6)
    one = SkewModel(SkewState(seeds=1)).scatter("bn")["slope_raw"]
    three = SkewModel(SkewState(seeds=3)).scatter("bn")["slope_raw"]
    assert one != three  # the seeds control changes the slope it shows


# ----- clicks from many threads (issue 16 item 5: can a click be lost?) ---------------------------------------
@dataclasses.dataclass(frozen=True)
class TinyState:
    size: int = 1
    lr: float = 0.1


class TinyPanel(TrainingPanel):
    """The training panels' protocol around a run without a model: a set-up of ``setup_s`` (where a panel builds
    its trainers, after ``_new_run_control``), then ``steps`` steps that check the RunControl like the Trainer."""

    STRUCTURAL = ("size",)
    LIVE = ("lr",)

    def __init__(self, mode: str, steps: int = 20, step_s: float = 0.0005, setup_s: float = 0.002):
        super().__init__(TinyState(), mode)
        self.steps, self.step_s, self.setup_s = steps, step_s, setup_s
        self.curve: list[int] = []
        self.word = "idle"
        self.runs: list[tuple] = []  # (how many logged requests the loop had taken when the run began, end word)
        self.taken = 0
        take = self.controller.take

        def counting_take():
            n = len(self.controller.log)  # the requests logged so far (a click logs under the same lock as take)
            req = take()
            self.taken = max(self.taken, n)
            return req

        self.controller.take = counting_take
        self._bind("lr", W.FloatSlider(value=0.1, min=0.01, max=1.0))

    def _train(self) -> bool:
        self._clear()
        control = self._new_run_control()
        started_with = self.taken
        try:
            time.sleep(self.setup_s)
            for i in range(self.steps):
                if control.stop_requested:
                    break
                time.sleep(self.step_s)
                self.curve.append(i)
                self.word = "running"
        finally:
            self.run_control = None
        interrupted = control.stop_requested or self.controller.stop_requested
        self.word = "stopped" if interrupted else "done"
        self.runs.append((started_with, self.word, len(self.curve)))
        return interrupted

    def _clear(self) -> None:
        self.curve = []

    def _show_idle(self, word: str) -> None:
        self.word = word


def _click_at_random(panel, seed: int, threads: int = 4, clicks: int = 25, pause_s: float = 0.004) -> None:
    def clicker(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        for _ in range(clicks):
            kind = rng.choice(("start", "start", "stop", "reset", "lr"))
            if kind == "lr":
                panel.controls["lr"].value = round(rng.uniform(0.01, 1.0), 3)
            else:
                panel.buttons[kind].click()
            time.sleep(rng.uniform(0, pause_s))

    workers = [threading.Thread(target=clicker, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


def _last_button(log) -> tuple[int, str]:
    return [(i, e[0]) for i, e in enumerate(log) if e[0] in ("start", "stop", "reset")][-1]


def _assert_tiny_final_state(panel: TinyPanel, rnd: int) -> None:
    log = panel.controller.log
    i, last = _last_button(log)
    after = [r for r in panel.runs if r[0] > i]  # runs that began knowing the last click
    where = f"round {rnd}: last click {last} (#{i} of {len(log)}), runs after it {after}, word {panel.word!r}"
    assert not panel.running and panel.taken == len(log), f"requests left unserved: {where}"
    if last == "start":
        assert len(after) == 1 and after[0][1:] == ("done", panel.steps) and panel.word == "done", where
    else:
        assert not after and panel.word == {"stop": "stopped", "reset": "reset"}[last], where
        if last == "reset":
            assert panel.curve == [], where
    lrs = [e[2] for e in log if e[0] == "set"]
    if lrs:
        assert panel.state.lr == lrs[-1], where


@pytest.mark.parametrize("mode, frontend", [("thread", "jupyterlab"), ("blocking", "jupyterlab"), ("thread", "voila")])
def test_no_click_is_lost_under_random_clicks_from_many_threads(monkeypatch, mode, frontend):
    """Many threads click Start / Stop / Reset and drag the lr at random; after each burst every request was
    served and the panel is where the last click put it: Start: one run began after it and finished; Stop:
    stopped, no run after it; Reset: reset, curve cleared; the lr is the last one set. Clicks land while a run
    is set up (between _new_run_control and its first step), while it ends, and (Voila) while the re-send
    timers hold the claim."""
    from sparseopt_edu.widgets import base

    monkeypatch.setattr(base, "RESEND_DELAYS_S", (0.0, 0.001, 0.003, 0.006))
    panel = TinyPanel(mode)
    panel.frontend = frontend
    for rnd in range(25):
        _click_at_random(panel, seed=rnd)
        panel.wait(30)
        time.sleep(0.02)  # the last re-send timers (Voila)
        panel.wait(30)
        _assert_tiny_final_state(panel, rnd)


def test_no_click_is_lost_on_a_real_race_panel():
    """The same bursts against a real (tiny) RacePanel in thread mode: its trainers, its side-by-side loop."""
    panel = RacePanel(tiny_race(epochs=1), mode="thread")
    for rnd in range(3):
        _click_at_random(panel, seed=100 + rnd, threads=3, clicks=6, pause_s=0.05)
        panel.wait(120)
        log = panel.controller.log
        i, last = _last_button(log)
        status = panel.status.value
        word = {"start": "done", "stop": "stopped", "reset": "reset"}[last]
        assert not panel.running and status.startswith(f"<code>{word} · "), (rnd, last, status)
        if last == "start":
            assert panel.summary()["done_pairs"] == 1 and [r for _, r in panel.runs_done[-2:]] == ["done", "done"]
        if last == "reset":
            assert all(len(panel._trace(1, on, 2).x) == 0 for on in (False, True)), status


def test_a_start_click_during_a_run_restarts_it_and_never_stops_the_new_run():
    """The narrowest window, held open: a Start click while a run goes on; the loop starts the new run right
    after the click logs its request, before the callback returns. The new run must train to its end (it used
    to be stopped by the very click that asked for it: the callback stopped ``run_control`` after requesting)."""
    panel = TinyPanel("thread", steps=400, step_s=0.001)
    panel.buttons["start"].click()
    deadline = time.monotonic() + 30
    while not panel.curve and time.monotonic() < deadline:
        time.sleep(0.002)
    first = panel.run_control
    assert first is not None, "the first run did not start"
    real = panel.controller.request_start

    def request_then_let_the_loop_run():  # the click's thread loses the CPU right after logging its request
        real()
        t_end = time.monotonic() + 30
        while panel.run_control in (None, first) and time.monotonic() < t_end:
            time.sleep(0.001)

    panel.controller.request_start = request_then_let_the_loop_run
    panel.buttons["start"].click()
    panel.wait(60)
    assert [r[1:] for r in panel.runs] == [("stopped", panel.runs[0][2]), ("done", 400)], panel.runs
    assert panel.word == "done"


# ----- the first click (issue 16 item 17) ---------------------------------------------------------------------
def test_a_displayed_training_panel_warms_up_its_first_run_and_draws_no_random_number():
    """Displaying a training panel starts, on a daemon thread, what its first run would do first (torch's first
    optimizer imports torch._dynamo; the dataset goes into the cache); it draws no random number, so what a
    notebook prints does not change; the run waits for it rather than doing the same work beside it. A panel
    that is never displayed starts nothing; a panel without a run has nothing to warm."""
    import sys

    import numpy as np
    import torch

    from sparseopt_edu.data import cache
    from sparseopt_edu.widgets.base import train_config

    cache.clear_cache()
    panel = RacePanel(tiny_race(), mode="blocking")
    assert panel._warming is None  # built, not shown: nothing started
    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(11)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    panel._repr_mimebundle_()
    warming = panel._warming
    assert warming is not None
    warming.join(120)
    assert not warming.is_alive()
    assert torch.equal(torch.get_rng_state(), before[0]) and (np.random.get_state()[1] == before[1]).all()
    assert random.getstate() == before[2]
    dataset = train_config(panel.state.configs()[0]).dataset
    assert [key[0] for key in cache._CACHE] == [dataset] and "torch._dynamo" in sys.modules
    panel._repr_mimebundle_()  # shown again: no second warm-up
    assert panel._warming is warming
    panel.run()
    assert "done" in panel.status.value
    skew = SkewPanel(tiny_skew())
    skew._repr_mimebundle_()
    assert not hasattr(skew, "_warming")
