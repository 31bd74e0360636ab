"""Widget controllers and panels without a kernel: set traits, click buttons from Python, check requests and runs."""
from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

from sparseopt_edu.widgets import Controller, RacePanel, RaceState, SkewPanel, SkewState, pick_mode  # noqa: E402
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
    assert mode in panel.status.value or ("thread" in panel.status.value if mode == "thread" else True)


# ----- RacePanel ------------------------------------------------------------------------------------------------
def test_race_blocking_run_draws_both_arms():
    panel = RacePanel(tiny_race(), mode="blocking")
    panel.run()
    s = panel.summary()
    assert s["done_pairs"] == 1 and len(panel.runs_done) == 2
    loss_traces = [panel._trace(1, on, 2) for on in (False, True)]
    assert all(len(t.x) > 0 for t in loss_traces)
    assert [t.name for t in loss_traces] == ["SGD (baseline)", "SparseOpt+SGD"]
    assert "done" in panel.status.value and "blocking" in panel.status.value


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


def test_race_live_lr_and_structural_restart():
    panel = RacePanel(tiny_race(epochs=40), mode="thread")
    panel.buttons["start"].click()
    deadline = time.monotonic() + 60
    while panel.step < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    panel.controls["lr"].value = 0.02  # live: no restart
    time.sleep(0.3)
    assert panel.running and panel.state.lr == pytest.approx(0.02)
    panel.controls["norm"].value = "none"  # structural: the running race restarts with it
    time.sleep(0.5)
    panel.buttons["stop"].click()
    panel.wait(120)
    norms = [cfg["norm"] for cfg, _ in panel.runs_done]
    assert norms[0] == "bn" and "none" in norms


def test_race_reset_clears_curves():
    panel = RacePanel(tiny_race(), mode="blocking")
    panel.run()
    assert len(panel._trace(1, False, 2).x) > 0
    panel.buttons["reset"].click()
    assert len(panel._trace(1, False, 2).x) == 0 and "reset" in panel.status.value
