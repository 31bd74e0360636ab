"""Plotly figure builders the notebooks call: each returns a fully configured ``go.Figure``.

Why builders return plain figures: a static figure is displayed as is; an interactive one is wrapped once in a
``go.FigureWidget`` and later redrawn with ``refresh(widget, builder(...))``, which copies the new figure in
under one ``batch_update()``. Every figure is configured completely before it is displayed (Voila drops changes
made after ``display()`` during the first execution, ENV.md). The library never imports this module.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go
import torch
from torch import nn

from .bands import band_over_seeds
from .paper import TABLE2, TABLE2_SPARSITIES
from .sparse import SparseMasks, maskable_layers
from .sparse.distributions import DISTRIBUTIONS, layer_counts

COLORS = {"uniform": "#636efa", "er": "#00cc96", "erk": "#ef553b",
          "baseline": "#7f7f7f", "sparseopt": "#d62728", "paper": "#1f77b4", "ours": "#ff7f0e"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
LAYOUT = {"template": "plotly_white", "height": 380, "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
              "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0.0}}


# Panel figures must fit the notebook column. Measured in JupyterLab 4.6 (plotly 7.1, anywidget): an autosized
# FigureWidget is drawn at plotly's 700 px default and resized only when the window is, so the panels ask for a
# width that fits the narrowest usual column: a 1280 px window with the file browser open leaves an 848 px
# output area (968 px with it closed). Nothing may ask for more than MAX_FIXED_WIDTH.
COLUMN_WIDTH = 840
MAX_FIXED_WIDTH = 848
LEGEND_GAP_PX = 58  # below the plot area: tick labels and the x-axis title come first


def column_layout(height: int, top: int, bottom: int = 100, left: int = 60, right: int = 20) -> dict:
    """Layout for a panel figure: COLUMN_WIDTH wide, ``height`` px, a horizontal legend under the x-axis titles.

    The legend sits LEGEND_GAP_PX below the plot area whatever the height (plotly places it in plot fractions),
    inside the bottom margin.
    """
    plot_h = height - top - bottom
    return {"width": COLUMN_WIDTH, "height": height,
            "margin": {"t": top, "b": bottom, "l": left, "r": right},
            "legend": {"orientation": "h", "yanchor": "top", "x": 0.0, "y": -LEGEND_GAP_PX / plot_h}}


def _layout(fig: go.Figure, **kw) -> go.Figure:
    fig.update_layout(**{**LAYOUT, **kw})
    return fig


def refresh(widget: go.FigureWidget, fig: go.Figure) -> go.FigureWidget:
    """Redraw ``widget`` as ``fig``: trace by trace under one batch_update when the trace list matches."""
    same = len(widget.data) == len(fig.data) and all(a.type == b.type for a, b in zip(widget.data, fig.data))
    if same:
        with widget.batch_update():
            for old, new in zip(widget.data, fig.data):
                props = new.to_plotly_json()
                props.pop("type", None)
                props.pop("uid", None)
                old.update(props, overwrite=True)
            widget.layout.update(fig.layout.to_plotly_json(), overwrite=True)
    else:
        with widget.batch_update():
            widget.data = []
        widget.add_traces(list(fig.data))
        with widget.batch_update():
            widget.layout.update(fig.layout.to_plotly_json(), overwrite=True)
    return widget


# ----------------------------------------------------------------------------------------------- layer shapes
def layer_shapes(model_or_masks, dense: Iterable[str] = ()) -> dict[str, tuple[int, ...]]:
    """Weight shapes of the maskable (Linear/Conv2d) layers, in model order, minus ``dense``."""
    if isinstance(model_or_masks, SparseMasks):
        return {n: tuple(m.shape) for n, m in model_or_masks.items()}
    if isinstance(model_or_masks, nn.Module):
        return {n: tuple(m.weight.shape) for n, m in maskable_layers(model_or_masks, dense).items()}
    return {n: tuple(s) for n, s in dict(model_or_masks).items()}


def short_name(name: str) -> str:
    """'layer2.0.conv1' -> 'l2.0.c1': tick labels that fit under a bar."""
    return name.replace("layer", "l").replace("conv", "c").replace("shortcut", "sc").replace("downsample", "ds")


def density_table(shapes: Mapping[str, Sequence[int]], sparsity: float,
                  distributions: Iterable[str] = DISTRIBUTIONS) -> dict[str, dict[str, float]]:
    """{distribution: {layer: density}} from the exact integer live counts (what sparsify() would keep)."""
    out = {}
    for dist in distributions:
        counts = layer_counts(shapes, sparsity, dist)
        out[dist] = {n: counts[n] / math.prod(s) for n, s in shapes.items()}
    return out


def density_bars(shapes: Mapping[str, Sequence[int]], sparsity: float,
                 distributions: Iterable[str] = DISTRIBUTIONS, *, title: str | None = None,
                 highlight: str | None = None) -> go.Figure:
    """Per-layer density (1 - sparsity) for each distribution as grouped bars; a line at the global density."""
    shapes = layer_shapes(shapes)
    table = density_table(shapes, sparsity, distributions)
    names = list(shapes)
    fig = go.Figure()
    for dist, dens in table.items():
        fig.add_bar(
            x=[short_name(n) for n in names], y=[dens[n] for n in names], name=dist,
            marker_color=COLORS.get(dist), customdata=[[n, "x".join(map(str, shapes[n]))] for n in names],
            hovertemplate="%{customdata[0]} (%{customdata[1]})<br>density %{y:.3f}<extra>" + dist + "</extra>",
        )
    fig.add_hline(y=1 - sparsity, line_dash="dot", line_color="black",
                  annotation_text=f"global density {1 - sparsity:.2f}", annotation_position="top right")
    _layout(fig, barmode="group", title=title or f"Per-layer density at global sparsity {sparsity:.2f}",
            yaxis={"title": "density = 1 - sparsity", "range": [0, 1.05]}, xaxis={"title": "layer", "tickangle": -60},
            height=420)
    if highlight is not None and highlight in shapes:
        i = names.index(highlight)
        fig.add_vrect(x0=i - 0.5, x1=i + 0.5, fillcolor="gold", opacity=0.25, line_width=0)
    return fig


def fan_in_histogram(masks: SparseMasks, name: str, *, title: str | None = None) -> go.Figure:
    """How many neurons of layer ``name`` keep k live incoming weights, k = 0..fan-in."""
    live = masks.neuron_live(name).cpu()
    fan = masks.fan_in(name)
    counts = torch.bincount(live, minlength=fan + 1)
    ks = torch.nonzero(counts).flatten()
    lo, hi = int(ks.min()), int(ks.max())
    x = list(range(max(0, lo - 1), min(fan, hi + 1) + 1))
    mean = float(live.float().mean())
    cv = float(live.float().std() / max(mean, 1e-12)) if live.numel() > 1 else 0.0
    fig = go.Figure(go.Bar(x=x, y=[int(counts[k]) for k in x], marker_color=COLORS["erk"], name="neurons",
                           hovertemplate="%{y} neurons keep %{x} weights<extra></extra>"))
    fig.add_vline(x=mean, line_dash="dot", line_color="black",
                  annotation_text=f"mean {mean:.1f} of {fan}", annotation_position="top left")
    _layout(fig, title=title or f"Fan-in of {name}: live incoming weights per neuron (spread {100 * cv:.0f}%)",
            xaxis={"title": f"live incoming weights (fan-in {fan})"}, yaxis={"title": "neurons"},
            bargap=0.05, showlegend=False)
    return fig


# ------------------------------------------------------------------------------------------------- curves
def _get(history, key):
    if isinstance(history, Mapping):
        return list(history.get(key, []))
    return list(getattr(history, key, []) or [])


def seed_band(runs: Sequence, metric: str, x: str = "epoch") -> dict:
    """Mean, min and max of ``metric`` over runs (History objects or their dicts), point by point.

    The rule of :mod:`sparseopt_edu.bands`: each point over the runs with a finite value there (``n`` of them),
    as long as the longest run; x is the longest run's ``x`` (1, 2, ... if it has none).
    """
    ys = [_get(r, metric) for r in runs]
    band = band_over_seeds(ys)
    longest = max(range(len(runs)), key=lambda i: len(ys[i]), default=None)
    xs = _get(runs[longest], x)[: len(band.mean)] if longest is not None else []
    if len(xs) < len(band.mean):
        xs = list(range(1, len(band.mean) + 1))
    return {"x": xs, "mean": band.mean, "lo": band.lo, "hi": band.hi, "n": band.n, "seeds": len(runs)}


def convergence_curves(groups: Mapping[str, Sequence], metric: str = "test_acc", *, x: str = "epoch",
                       title: str | None = None, yaxis_title: str | None = None) -> go.Figure:
    """One line per group (the mean over its seeds) with a shaded min-max band; groups map label -> runs."""
    fig = go.Figure()
    for i, (label, runs) in enumerate(groups.items()):
        band = seed_band(runs, metric, x)
        color = COLORS.get(label.split()[0].lower(), PALETTE[i % len(PALETTE)])
        rgb = tuple(int(color[j:j + 2], 16) for j in (1, 3, 5))
        if band["seeds"] > 1:
            fig.add_scatter(x=band["x"] + band["x"][::-1], y=band["hi"] + band["lo"][::-1], fill="toself", mode="lines",
                            fillcolor=f"rgba({rgb[0]},{rgb[1]},{rgb[2]},0.18)", line={"width": 0},
                            hoverinfo="skip", showlegend=False, name=f"{label} range")
        fig.add_scatter(x=band["x"], y=band["mean"], mode="lines+markers", line={"color": color, "width": 2},
                        name=f"{label} ({band['seeds']} seed{'s' if band['seeds'] != 1 else ''})")
    _layout(fig, title=title or f"{metric}: mean over seeds, band = min-max",
            xaxis={"title": x}, yaxis={"title": yaxis_title or metric})
    return fig


# ------------------------------------------------------------------------------------------------- Table 2
def table2_figure(ours: Sequence[Mapping] = (), epochs: int = 100, *, title: str | None = None) -> go.Figure:
    """The paper's Table 2 at one epoch budget (bars with std error bars) beside our runs (markers, spread).

    ``ours``: dicts with ``sparsity``, ``method`` ("sparseopt"/"baseline"), ``mean``, ``std`` (or ``values``,
    the per-seed accuracies), optional ``label`` (e.g. "ours, 100 ep, CIFAR-100").
    """
    fig = go.Figure()
    xs = [f"{round(100 * s)}%" for s in TABLE2_SPARSITIES]
    for method in ("baseline", "sparseopt"):
        cells = [TABLE2[(s, method)][epochs] for s in TABLE2_SPARSITIES]
        fig.add_bar(x=xs, y=[c[0] for c in cells], error_y={"type": "data", "array": [c[1] for c in cells]},
                    name=f"paper: {method}", marker_color=COLORS[method], opacity=0.55,
                    offsetgroup=method, hovertemplate="%{y:.2f}%<extra>paper " + method + "</extra>")
    shown: set[str] = set()  # one legend entry per label (one trace per sparsity)
    for row in ours:
        vals = list(row.get("values", []))
        mean = row.get("mean", sum(vals) / len(vals) if vals else float("nan"))
        std = row.get("std", float(torch.tensor(vals, dtype=torch.float64).std()) if len(vals) > 1 else 0.0)
        method = row["method"]
        label = row.get("label", f"ours: {method}")
        fig.add_scatter(x=[f"{round(100 * row['sparsity'])}%"], y=[mean], mode="markers",
                        error_y={"type": "data", "array": [std]}, offsetgroup=method,
                        marker={"symbol": "diamond", "size": 12, "color": COLORS[method], "line": {"color": "black", "width": 1}},
                        name=label, legendgroup=label, showlegend=label not in shown,
                        hovertemplate="%{y:.2f}%<extra>" + label + "</extra>")
        shown.add(label)
    values = [TABLE2[(s, m)][epochs][0] for s in TABLE2_SPARSITIES for m in ("baseline", "sparseopt")]
    for row in ours:
        values += [v for v in row.get("values", [row.get("mean")]) if v is not None and math.isfinite(v)]
    lo, hi = min(values), max(values)
    _layout(fig, barmode="group", title=title or f"ResNet-20 + RigL on CIFAR-100, {epochs} epochs: paper (bars) vs ours",
            xaxis={"title": "sparsity"}, yaxis={"title": "top-1 test accuracy (%)", "range": [max(0.0, lo - 5), min(100.0, hi + 3)]},
            scattermode="group")
    return fig


# ------------------------------------------------------------------------------------------------- runs/
def load_runs(root: str | Path = "runs") -> list[dict]:
    """Every saved run under ``root``: {"dir", "config" (dict), "history" (dict)} for each history.json found.

    Reads plain JSON (the format of ``History.to_json`` and ``TrainConfig.to_json``), so it works whether or not
    the training engine is importable; a missing or empty folder gives an empty list.
    """
    root = Path(root)
    runs = []
    if not root.is_dir():
        return runs
    for hist_path in sorted(root.rglob("history.json")):
        try:
            history = json.loads(hist_path.read_text())
        except (OSError, ValueError):
            continue
        cfg_path = hist_path.parent / "config.json"
        try:
            config = json.loads(cfg_path.read_text()) if cfg_path.exists() else history.get("config", {})
        except (OSError, ValueError):
            config = {}
        runs.append({"dir": str(hist_path.parent), "config": config, "history": history})
    return runs


def group_runs(runs: Sequence[Mapping], keys: Sequence[str] = ("sparsity", "sparseopt")) -> dict[tuple, list]:
    """Group loaded runs by config values (seeds land in the same group)."""
    groups: dict[tuple, list] = {}
    for run in runs:
        cfg = run.get("config", {})
        groups.setdefault(tuple(cfg.get(k) for k in keys), []).append(run["history"])
    return groups


# ------------------------------------------------------------------------------------- paired evidence
def paired_differences(comparisons: Sequence[Mapping], metric: str = "test_acc", *, scale: float = 100.0,
                       title: str | None = None, yaxis_title: str | None = None) -> go.Figure:
    """Treatment - baseline per sparsity (mean over seeds, 95% t interval as error bars) and the zero line:
    a bar whose interval crosses 0 shows no detectable difference. ``comparisons`` from ``convergence.compare_arms``."""
    fig = go.Figure()
    xs, ys, lo, hi, texts = [], [], [], [], []
    for c in comparisons:
        d = c["metrics"].get(metric)
        if d is None or d["ci95"] is None:
            continue
        t = c["treatment"]
        xs.append(f"{t['method']} {round(100 * t['sparsity'])}%" + (f" ({t['epochs']} ep)" if t.get("epochs") else ""))
        ys.append(d["mean"] * scale)
        lo.append((d["mean"] - d["ci95"][0]) * scale)
        hi.append((d["ci95"][1] - d["mean"]) * scale)
        texts.append(d["verdict"])
    fig.add_scatter(x=xs, y=ys, mode="markers", marker={"size": 11, "color": COLORS["sparseopt"]},
                    error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                    text=texts, hovertemplate="%{x}: %{y:+.2f} (%{text})<extra></extra>",
                    name=f"mean difference, 95% interval ({comparisons[0]['metrics'][metric]['n'] if comparisons else 0} seeds)")
    fig.add_hline(y=0, line={"color": "black", "dash": "dash", "width": 1})
    _layout(fig, title=title or f"paired difference in {metric}", xaxis={"title": "", "automargin": True},
            yaxis={"title": yaxis_title or metric, "zeroline": True}, showlegend=True)
    return fig
