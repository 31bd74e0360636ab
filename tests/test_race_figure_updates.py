"""The race panel's live figure sends only what changed (issue 16 item 18), and still shows every band."""
from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from sparseopt_edu.bands import band_over_seeds  # noqa: E402
from sparseopt_edu.widgets.race import MAX_POINTS, RacePanel, RaceState  # noqa: E402

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "figure_cost.py")


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("SPARSEOPT_EDU_FAST", "1")


def tiny(**kw) -> RaceState:
    return RaceState(**{**dict(seeds=2, epochs=1, delta_t=5, hidden=32, log_every=2, method="static"), **kw})


def sent_updates(panel) -> list[dict]:
    """Record the plotly edit messages the figure sends from now on (restyle, update, relayout)."""
    out = []
    fig = panel.figure
    send = fig._send

    def record(msg, buffers=None):
        state = msg.get("state", {})
        for key in ("_py2js_update", "_py2js_restyle", "_py2js_relayout"):
            if state.get(key):
                out.append({"kind": key, **state[key]})
        return send(msg, buffers)

    fig._send = record
    return out


def same(a, b) -> bool:
    return all((x is None or (isinstance(x, float) and math.isnan(x))) == (y is None or math.isnan(y))
               and (x is None or math.isnan(x) or x == pytest.approx(y)) for x, y in zip(a, b, strict=True))


def test_the_figure_shows_every_band_after_a_race():
    panel = RacePanel(tiny(), mode="blocking")
    panel.run()
    for on in (False, True):
        runs = list(panel.curves[on].values())
        for col, ykey in ((1, "loss"), (2, "test_acc")):
            band = band_over_seeds([r[ykey] for r in runs])
            for part, values in enumerate((band.lo, band.hi, band.mean)):
                trace = panel._trace(col, on, part)
                assert same(list(values), [float(v) for v in trace.y]), (col, on, part)
                assert len(trace.x) == len(values)


def test_a_flush_sends_only_what_changed():
    panel = RacePanel(tiny(), mode="blocking")
    panel.run()
    sent = sent_updates(panel)
    panel._flush()
    assert sent == []  # nothing new: nothing goes out
    for rec in panel.curves[True].values():  # one more loss point on the SparseOpt arm only
        rec["step"].append(rec["step"][-1] + 2)
        rec["loss"].append(rec["loss"][-1])
    panel._flush()
    assert len(sent) == 1 and sent[0]["kind"] == "_py2js_update"
    assert sent[0]["style_traces"] == [panel._index(1, True, part) for part in range(3)]
    assert sent[0]["layout_data"] == {}  # the title did not change
    assert len(panel._trace(1, True, 2).y) == len(panel.curves[True][0]["loss"])


def test_a_long_curve_is_thinned():
    panel = RacePanel(tiny(seeds=1), mode="blocking")
    panel.run()
    rec = panel.curves[False][0]
    while len(rec["loss"]) < 5 * MAX_POINTS:  # a run's records only grow
        rec["step"].append(rec["step"][-1] + 2)
        rec["loss"].append(1.0 / len(rec["loss"]))
    panel._flush()
    trace = panel._trace(1, False, 2)
    assert len(trace.y) == MAX_POINTS and list(trace.x[:2]) == rec["step"][0:10:5]
    assert list(trace.y) == pytest.approx(rec["loss"][::5])


def test_a_new_race_redraws_though_its_lengths_repeat():
    panel = RacePanel(tiny(seeds=1), mode="blocking")
    panel.run()
    first = list(panel._trace(1, False, 2).y)
    panel.set(sparsity=0.5)
    panel.run()  # same number of points, other values
    assert list(panel._trace(1, False, 2).y) != first


def test_figure_cost_benchmark_smoke(tmp_path, monkeypatch):
    import sparseopt_edu.widgets.race as race

    monkeypatch.setattr(race, "make_trainer", race.make_trainer)  # the benchmark wraps it: undone after
    spec = importlib.util.spec_from_file_location("figure_cost", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "cost.json"
    assert bench.main(["--epochs", "2", "--seeds", "1", "--repeat", "1", "--json", str(out)]) == 0
    (race,) = json.loads(out.read_text())["races"]
    assert race["flushes"] >= 1 and 0 < race["fraction"] < 1 and race["bytes_sent"] > 0
    assert race["runs"] == 2


def test_a_finished_race_is_the_state_a_late_front_end_draws():
    """Voila asks for the widgets' states after executing the notebook, having dropped the messages sent
    meanwhile: the synced state must be the finished race, not the empty build ("race: idle")."""
    panel = RacePanel(tiny(), mode="thread")
    panel.run()
    panel.wait(120)
    data, layout = panel.figure._widget_data, panel.figure._widget_layout
    assert "final test acc" in layout["title"]["text"]
    for col in (1, 2):
        for on in (False, True):
            assert len(data[panel._index(col, on, 2)]["y"]) == len(panel._trace(col, on, 2).y) > 0
