"""viz figure builders and the paper's Table 2 data: shapes of the figures, exact numbers, redraw in place."""
from __future__ import annotations

import json
import math

import plotly.graph_objects as go
import pytest

from sparseopt_edu import paper, viz
from sparseopt_edu.models import resnet20
from sparseopt_edu.sparse import layer_counts, sparsify


@pytest.fixture(scope="module")
def shapes():
    return viz.layer_shapes(resnet20(num_classes=100))


def test_paper_table2_matches_paper_md():
    assert paper.table2(0.9, "sparseopt", 100) == (61.34, 0.35)
    assert paper.table2(0.97, "baseline", 500) == (57.32, 0.16)
    assert len(paper.table2_rows()) == 24 and len(paper.table2_rows(epochs=100)) == 6
    assert paper.table2_gain(0.97, 100) == pytest.approx(1.42)
    # every Table 2 cell of the paper shows SparseOpt ahead
    assert all(paper.table2_gain(s, e) > 0 for s in paper.TABLE2_SPARSITIES for e in paper.TABLE2_EPOCHS)
    with pytest.raises(KeyError, match="sparsities"):
        paper.table2(0.8, "sparseopt", 100)
    with pytest.raises(KeyError, match="epoch"):
        paper.table2(0.9, "sparseopt", 150)


def test_layer_shapes_from_model_masks_and_dict(shapes):
    model = resnet20(num_classes=100)
    masks = sparsify(model, 0.9, "erk")
    assert viz.layer_shapes(masks) == shapes
    assert viz.layer_shapes(model, dense=["conv1"]) == {k: v for k, v in shapes.items() if k != "conv1"}
    assert viz.layer_shapes({"a": [2, 3]}) == {"a": (2, 3)}
    assert shapes["conv1"] == (16, 3, 3, 3) and shapes["fc"] == (100, 64)


def test_density_table_is_the_exact_live_count(shapes):
    table = viz.density_table(shapes, 0.9)
    assert set(table) == {"uniform", "er", "erk"}
    for dist, dens in table.items():
        counts = layer_counts(shapes, 0.9, dist)
        for name, d in dens.items():
            assert d * math.prod(shapes[name]) == pytest.approx(counts[name])
    assert table["erk"]["layer3.0.conv2"] == pytest.approx(0.063, abs=1e-3)


def test_density_bars(shapes):
    fig = viz.density_bars(shapes, 0.9, highlight="fc")
    assert [t.name for t in fig.data] == ["uniform", "er", "erk"]
    assert all(len(t.x) == len(shapes) for t in fig.data)
    assert max(fig.data[0].y) == pytest.approx(0.1, abs=3e-3)  # uniform: 1 - S, up to one weight of rounding
    assert "0.90" in fig.layout.title.text
    assert any(s.type == "rect" for s in fig.layout.shapes)  # highlight
    json.dumps(fig.to_plotly_json(), default=str)  # serialisable


def test_fan_in_histogram_counts_every_neuron():
    model = resnet20(num_classes=100)
    masks = sparsify(model, 0.9, "erk", seed=0)
    fig = viz.fan_in_histogram(masks, "layer3.0.conv2")
    bar = fig.data[0]
    assert sum(bar.y) == 64  # 64 output channels
    live = masks.neuron_live("layer3.0.conv2").tolist()
    assert sum(k * n for k, n in zip(bar.x, bar.y)) == sum(live)
    assert any("of 576" in a.text for a in fig.layout.annotations)


def test_fan_in_histogram_constant_fan_in_is_one_bar():
    model = resnet20(num_classes=10)
    masks = sparsify(model, 0.75, "uniform", fan_in="constant", seed=0)
    fig = viz.fan_in_histogram(masks, "layer3.0.conv2")  # 576 * 0.25 = 144 per neuron
    nonzero = [x for x, y in zip(fig.data[0].x, fig.data[0].y) if y]
    assert nonzero == [144]


def test_refresh_updates_a_figurewidget_in_place(shapes):
    widget = go.FigureWidget(viz.density_bars(shapes, 0.9))
    trace = widget.data[0]
    viz.refresh(widget, viz.density_bars(shapes, 0.95))
    assert widget.data[0] is trace  # same traces, new values
    assert max(widget.data[0].y) == pytest.approx(0.05, abs=3e-3)
    assert "0.95" in widget.layout.title.text
    # a different trace list replaces the traces
    masks = sparsify(resnet20(num_classes=100), 0.9, "erk")
    viz.refresh(widget, viz.fan_in_histogram(masks, "fc"))
    assert len(widget.data) == 1 and widget.layout.title.text.startswith("Fan-in of fc")


def test_band_rule_ragged_runs_and_missing_values():
    """bands' rule: each point over the runs with a finite value there; as long as the longest run."""
    from sparseopt_edu.bands import band_over_seeds

    b = band_over_seeds([[1.0, None, 3.0, 4.0], [3.0, 2.0, float("nan")], [5.0]])
    assert b.mean == [3.0, 2.0, 3.0, 4.0] and b.lo == [1.0, 2.0, 3.0, 4.0] and b.hi == [5.0, 2.0, 3.0, 4.0]
    assert b.n == [3, 1, 1, 1]  # None and NaN leave their point only; shorter runs leave the points they lack
    gap = band_over_seeds([[1.0, None, 2.0], [3.0, None]])
    assert gap.mean == [2.0, None, 2.0] and gap.n == [2, 0, 1]  # no run there: a gap (None), not the end
    assert band_over_seeds([]) == ([], [], [], []) and band_over_seeds([[], []]).mean == []


def test_seed_band_and_convergence_curves():
    runs = [{"epoch": [1, 2, 3], "test_acc": [0.1, 0.5, 0.7]}, {"epoch": [1, 2], "test_acc": [0.3, 0.7]}]
    band = viz.seed_band(runs, "test_acc")
    assert band["x"] == [1, 2, 3] and band["seeds"] == 2 and band["n"] == [2, 2, 1]  # as long as the longest
    assert band["mean"] == pytest.approx([0.2, 0.6, 0.7]) and band["lo"] == [0.1, 0.5, 0.7]
    assert band["hi"] == [0.3, 0.7, 0.7]
    missing = viz.seed_band([{"epoch": [1, 2, 3], "test_acc": [0.1, None, 0.7]}, {"test_acc": [0.3, 0.5]}], "test_acc")
    assert missing["x"] == [1, 2, 3] and missing["mean"] == pytest.approx([0.2, 0.5, 0.7])
    fig = viz.convergence_curves({"baseline": runs, "SparseOpt": runs[:1]}, "test_acc")
    names = [t.name for t in fig.data]
    assert names == ["baseline (2 seeds)", "SparseOpt (1 seed)"] or names[1] == "baseline (2 seeds)"
    assert sum(1 for t in fig.data if t.fill == "toself") == 1  # a band only where there are 2+ seeds
    assert viz.seed_band([], "test_acc")["x"] == []


def test_convergence_curves_accept_history_objects():
    from sparseopt_edu.train import History

    h = History()
    h.epoch.extend([1, 2])
    h.train_loss.extend([2.0, 1.0])
    fig = viz.convergence_curves({"baseline": [h, h]}, "train_loss")
    line = next(t for t in fig.data if t.mode == "lines+markers")
    assert list(line.y) == [2.0, 1.0]


def test_table2_figure_paper_bars_and_our_markers():
    fig = viz.table2_figure([{"sparsity": 0.9, "method": "sparseopt", "values": [60.0, 62.0]}], epochs=200)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["paper: baseline", "paper: sparseopt"]
    assert list(bars[1].y) == [63.12, 59.91, 57.01]
    assert list(bars[1].error_y.array) == [0.39, 0.45, 0.19]
    ours = next(t for t in fig.data if t.type == "scatter")
    assert list(ours.y) == [61.0] and ours.error_y.array[0] == pytest.approx(math.sqrt(2.0))
    assert "200 epochs" in fig.layout.title.text


def test_load_runs_and_group(tmp_path):
    assert viz.load_runs(tmp_path / "missing") == []
    for i, (sp, so) in enumerate([(0.9, True), (0.9, True), (0.95, False)]):
        run = tmp_path / "table2" / "runs" / f"r{i}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"sparsity": sp, "sparseopt": so, "model": "resnet20"}))
        (run / "history.json").write_text(json.dumps({"epoch": [1], "test_acc": [0.5 + i / 10]}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "history.json").write_text("{not json")
    runs = viz.load_runs(tmp_path)
    assert len(runs) == 3
    groups = viz.group_runs(runs)
    assert {k: len(v) for k, v in groups.items()} == {(0.9, True): 2, (0.95, False): 1}
