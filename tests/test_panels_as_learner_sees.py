"""What a learner sees on the panels, checked without a browser (issue 16: items 1, 2, 6, 8, 12).

The legend check replays every message a FigureWidget sends to the browser on a copy of the figure's initial
state, with plotly.js's rules, so it sees the names the browser draws (not the ones Python holds).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

from plotly.basedatatypes import Undefined  # noqa: E402
from plotly.basewidget import BaseFigureWidget  # noqa: E402

from sparseopt_edu.widgets import (  # noqa: E402
    DSTPanel,
    DSTState,
    NeuronStepPanel,
    NeuronStepState,
    RacePanel,
    RaceState,
    SkewPanel,
    SkewState,
)


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("SPARSEOPT_EDU_FAST", "1")
    for var in ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "VOILA_SERVER_URL", "VOILA_APP_PORT", "VOILA_PREHEAT"):
        monkeypatch.delenv(var, raising=False)


def tiny_dst(**kw) -> DSTState:
    # 1024 samples / batch 64 = 16 steps, an update every 2 steps until t_end: a few topology events
    base = dict(epochs=1, n_train=1024, n_test=128, hidden=32, delta_t=2, batch_size=64, log_every=2)
    base.update(kw)
    return DSTState.default(**base)


# ----- item 1: SRigL in notebook 03's panel ---------------------------------------------------------------
def test_dst_panel_runs_srigl_and_says_why_there_is_no_slope():
    panel = DSTPanel(tiny_dst(method="rigl"), mode="blocking")
    panel.set(method="srigl")  # the learner's click on the SRigL toggle
    panel.run()
    assert panel.error is None and "error" not in panel.status.value, panel.status.value
    assert panel.state.method == "srigl" and len(panel.updates) >= 2
    # SRigL keeps every neuron at the same fan-in (B // n or B // n + 1): no density spread, no slope to fit
    assert all(u["slope_raw"] is None for u in panel.updates)
    assert all(u["fan_in_cv"] is not None and u["fan_in_cv"] < 0.1 for u in panel.updates)
    title = panel.figure.layout.title.text
    assert "SRigL" in title and "ITOP" in title and "no slope to fit" in title, title
    slope_title = panel.figure.layout.annotations[3].text
    assert "none to fit" in slope_title and len(slope_title) <= 45, slope_title  # fits above its subplot


def test_dst_panel_rigl_keeps_its_slope():
    panel = DSTPanel(tiny_dst(method="rigl"), mode="blocking")
    panel.run()
    assert any(u["slope_raw"] is not None for u in panel.updates)
    assert "raw" in panel.figure.layout.title.text and "none to fit" not in panel.figure.layout.annotations[3].text


# ----- item 8: the fan-in CV the panel plots is the CV of the histogram it shows ---------------------------------
def cv_of_bars(x, y) -> float:
    """CV (sample std / mean) of the fan-ins a bar chart shows: ``y[i]`` neurons with ``x[i]`` live weights."""
    fan_ins = np.repeat(np.asarray(x, dtype=float), np.asarray(y, dtype=int))
    return float(fan_ins.std(ddof=1) / fan_ins.mean())


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_dst_panel_cv_is_the_cv_of_the_histogram_it_shows(monkeypatch, method):
    """At every redraw the CV curve's first point is the gray (start) histogram's CV and its last point the red
    (now) histogram's, computed here from the bars; both plots name the same layer; and the trainer's own
    layer-mean CV agrees (one sparse layer: the old panel averaged in the dense head, CV 0, and halved it)."""
    import sparseopt_edu.widgets.dst as dst

    events = []
    make = dst.make_trainer
    monkeypatch.setattr(dst, "make_trainer", lambda cfg, callbacks, control=None: make(
        cfg, callbacks + [lambda ev: ev.kind == "topology" and events.append(ev.data["fan_in_cv"])], control))
    panel = DSTPanel(tiny_dst(method=method), mode="blocking")
    seen = []
    flush = panel._flush

    def checked_flush():
        flush()
        d = panel.figure.data
        if len(d[2].y) >= 2:
            seen.append((d[2].y[0], cv_of_bars(d[0].x, d[0].y), d[2].y[-1], cv_of_bars(d[1].x, d[1].y)))

    panel._flush = checked_flush
    panel.run()
    assert panel.error is None and len(panel.updates) >= 2 and seen
    for start, start_bars, now, now_bars in seen:
        assert start == pytest.approx(start_bars, rel=1e-9) and now == pytest.approx(now_bars, rel=1e-9)
    assert [u["fan_in_cv"] for u in panel.updates] == pytest.approx(events, rel=1e-6)
    titles = [a.text for a in panel.figure.layout.annotations]
    assert "fc1" in titles[0] and "fc1" in titles[1] and "fc1" in titles[3], titles
    assert all(len(t) <= 45 for t in titles), titles  # a subplot title does not wrap


# ----- item 11: the full-mode race lasts long enough to steer, fast mode stays fast --------------------------
def test_race_pace_by_mode(monkeypatch):
    monkeypatch.delenv("SPARSEOPT_EDU_FAST")
    assert 20.0 <= RaceState.default().min_race_s <= 40.0  # Stop half-way, drag the lr: a person needs seconds
    monkeypatch.setenv("SPARSEOPT_EDU_FAST", "1")
    assert RaceState.default().min_race_s == 0.0  # nbval and the tests: flat out
    assert RaceState().min_race_s == 0.0  # a state built by hand is not paced unless asked


def _tiny_race(**kw) -> RaceState:
    return RaceState(**{**dict(seeds=1, epochs=1, delta_t=5, hidden=32, log_every=2, method="static"), **kw})


def test_paced_race_lasts_its_time_and_changes_no_number():
    import time

    flat = RacePanel(_tiny_race(), mode="blocking")
    flat.run()
    paced = RacePanel(_tiny_race(min_race_s=3.0), mode="blocking")
    t0 = time.perf_counter()
    paced.run()
    took = time.perf_counter() - t0
    assert 3.0 <= took < 3.0 + 10.0, took
    assert paced.curves == flat.curves  # the same steps, losses and accuracies: pacing only waits


def test_paced_race_stops_at_once():
    import time

    panel = RacePanel(_tiny_race(min_race_s=30.0), mode="thread")
    panel.buttons["start"].click()
    deadline = time.monotonic() + 60
    while panel.step < 2 and time.monotonic() < deadline:  # running (its trainers built, first rounds done)
        time.sleep(0.05)
    t0 = time.perf_counter()
    panel.buttons["stop"].click()
    panel.wait(10)
    assert time.perf_counter() - t0 < 1.0 and not panel.running
    assert "stopped" in panel.status.value and panel.runs_done[-1][1] == "stopped"


# ----- item 6: every trace in a legend has a name, as the browser draws it ------------------------------------
class BrowserMirror:
    """The trace list each FigureWidget's browser view holds: the initial data plus every restyle/update."""

    def __init__(self, monkeypatch):
        self.sent: dict[int, list] = {}
        mirror = self

        def restyle(fig, restyle_data, trace_indexes=None, source_view_id=None):
            mirror.sent.setdefault(id(fig), []).append((restyle_data, trace_indexes))
            return orig_restyle(fig, restyle_data, trace_indexes, source_view_id)

        def update(fig, restyle_data, relayout_data, trace_indexes=None, source_view_id=None):
            mirror.sent.setdefault(id(fig), []).append((restyle_data, trace_indexes))
            return orig_update(fig, restyle_data, relayout_data, trace_indexes, source_view_id)

        orig_restyle, orig_update = BaseFigureWidget._send_restyle_msg, BaseFigureWidget._send_update_msg
        monkeypatch.setattr(BaseFigureWidget, "_send_restyle_msg", restyle)
        monkeypatch.setattr(BaseFigureWidget, "_send_update_msg", update)

    def traces(self, fig) -> list[dict]:
        """plotly.js's view: a value per trace (cycled); undefined or null resets the attribute (measured in
        JupyterLab: a batch that renamed one trace showed "trace 2" for the others it touched)."""
        data = copy.deepcopy(fig._widget_data)  # what the view started from (set when the widget was built)
        for restyle_data, indexes in self.sent.get(id(fig), []):
            indexes = list(range(len(data))) if indexes is None else list(indexes)
            for prop, values in restyle_data.items():
                values = values if isinstance(values, list) else [values]
                for k, i in enumerate(indexes):
                    v = values[k % len(values)]
                    if v is Undefined or v is None:
                        data[i].pop(prop, None)
                    else:
                        data[i][prop] = v
        return data


def unnamed_in_legend(fig, traces: list[dict]) -> list[str]:
    if fig.layout.showlegend is False:
        return []
    return [f"trace {i} ({t.get('type')})" for i, t in enumerate(traces)
            if t.get("showlegend", True) is not False and not str(t.get("name") or "").strip()]


@pytest.fixture
def mirror(monkeypatch):
    return BrowserMirror(monkeypatch)


def test_skew_panel_legend_names_every_trace(mirror):
    panel = SkewPanel(SkewState(seeds=1, n_samples=128, hidden=32, neurons=32), mode="blocking")
    assert not unnamed_in_legend(panel.figure, mirror.traces(panel.figure))  # as first displayed (Fig. 3)
    panel.set(sparsity=0.5)
    panel.set(norm="none")
    panel.set(norm="ln")
    shown = mirror.traces(panel.figure)
    assert not unnamed_in_legend(panel.figure, shown)
    assert [t["name"] for t in shown] == [t.name for t in panel.figure.data]  # the browser agrees with Python


def test_dst_panel_legend_names_every_trace(mirror):
    panel = DSTPanel(tiny_dst(method="set"), mode="blocking")
    panel.run()
    assert not unnamed_in_legend(panel.figure, mirror.traces(panel.figure))


def test_race_panel_legend_names_every_trace(mirror):
    panel = RacePanel(RaceState(seeds=1, epochs=1, delta_t=5, hidden=32, log_every=2, method="static"),
                      mode="blocking")
    panel.run()
    panel.set(optimizer="adam")
    panel.run()  # renames both arms in the middle of a data batch
    shown = mirror.traces(panel.figure)
    assert not unnamed_in_legend(panel.figure, shown)
    assert any("Adam" in str(t.get("name")) for t in shown)


def test_neuron_step_panel_legend_names_every_trace(mirror):
    panel = NeuronStepPanel(NeuronStepState(steps=3, hidden=32, dataset="digits"))
    panel.show_step(2)
    assert not unnamed_in_legend(panel.figure, mirror.traces(panel.figure))


# ----- item 2: a front end that joins late (Voila) draws the measured figure -----------------------------------
def test_skew_panel_widget_state_holds_the_measured_figure():
    """Voila drops the update messages sent while it executes the notebook and draws each FigureWidget's synced
    state (``_widget_data``/``_widget_layout``, set when the widget is built): that state must be the measured
    figure, not the empty build with its "computing…" title (the dashboard showed only the theory curve)."""
    panel = SkewPanel(SkewState(seeds=1, n_samples=128, hidden=32, neurons=32), mode="thread")
    data, layout = panel.figure._widget_data, panel.figure._widget_layout
    by_name = {t.get("name"): t for t in data}
    for name in ("measured, BatchNorm", "measured, no norm", "slider's sparsity", "raw |grad|",
                 "SparseOpt-corrected"):
        assert len(by_name[name]["x"]) and len(by_name[name]["y"]), f"{name!r} empty in the synced state"
    assert layout["title"]["text"] == panel.title_text() and "computing" not in layout["title"]["text"]
    panel.set(sparsity=0.5)  # a redraw after display is kept too (a reload draws it)
    panel.wait(60)  # (thread mode: the redraw runs on a worker)
    assert panel.figure._widget_layout["title"]["text"].startswith("ratio at s=0.50")


def test_dst_panel_widget_state_holds_the_finished_run():
    panel = DSTPanel(tiny_dst(method="rigl"), mode="blocking")
    panel.run()
    data = {t.get("name"): t for t in panel.figure._widget_data}
    assert len(data["now"]["y"]) and len(data["fan-in CV of fc1"]["y"]) == len(panel.updates) + 1
    assert panel.figure._widget_layout["title"]["text"] == panel.title_text()


# ----- item 12: every figure fits the notebook column ----------------------------------------------------
def _panel_figures():
    yield "02 skew", SkewPanel(SkewState(seeds=1, n_samples=128, hidden=32, neurons=32), mode="blocking").figure
    yield "03 dst", DSTPanel(tiny_dst(method="set"), mode="blocking").figure
    yield "04 race", RacePanel(RaceState(seeds=1, epochs=1, delta_t=5, hidden=32, log_every=2, method="static"),
                               mode="blocking").figure
    yield "04 neuron step", NeuronStepPanel(NeuronStepState(steps=3, hidden=32, dataset="digits")).figure


def layout_problems(name: str, fig) -> list[str]:
    """What would not fit a ~970 px column, or would overlap, in ``fig``'s layout (pixels from its height)."""
    from sparseopt_edu.viz import MAX_FIXED_WIDTH

    lay = fig.layout
    out = []
    # An autosized FigureWidget is drawn 700 px wide: that fits, and so does a fixed width up to the column's.
    if lay.width is not None and lay.width > MAX_FIXED_WIDTH:
        out.append(f"{name}: fixed width {lay.width} px (narrowest column {MAX_FIXED_WIDTH} px)")
    height = lay.height or 450
    plot_h = height - (lay.margin.t or 0) - (lay.margin.b or 0)
    # Rows of subplots: row 1's x-axis tick labels and title sit above row 2's subplot title.
    rows = sorted({tuple(ax.domain) for k in dir(lay) if k.startswith("yaxis") and (ax := getattr(lay, k)) is not None
                   and ax.domain}, key=lambda d: d[0])
    for low, high in zip(rows, rows[1:]):
        gap_px = (high[0] - low[1]) * plot_h
        if gap_px < 90:
            out.append(f"{name}: {gap_px:.0f} px between subplot rows (axis title meets subplot title; need 90)")
    leg = lay.legend
    if lay.showlegend is not False and leg.y is not None and leg.y < 0:
        below_px = -leg.y * plot_h if leg.yanchor == "top" else -leg.y * plot_h - 20
        if below_px < 50:
            out.append(f"{name}: legend {below_px:.0f} px under the plot, on the x-axis title (need 50)")
        if below_px + 40 > (lay.margin.b or 0):
            out.append(f"{name}: legend outside the bottom margin ({lay.margin.b} px)")
    return out


def test_every_panel_figure_fits_the_column_without_overlaps():
    problems = [p for name, fig in _panel_figures() for p in layout_problems(name, fig)]
    assert not problems, problems


def test_library_figures_have_no_fixed_width():
    from sparseopt_edu import viz

    assert "width" not in viz.LAYOUT  # plain figures (go.Figure, rendered by plotly.js) autosize to the column
    assert viz.column_layout(400, 70)["width"] <= viz.MAX_FIXED_WIDTH
