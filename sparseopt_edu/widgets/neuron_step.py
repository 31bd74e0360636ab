"""How training responds to the skew (notebook 04, docs/method.md §4b), with ``diagnostics.NeuronStepTracker``.

One hidden layer whose neurons keep log-uniformly spread densities (a 100x range), BN after it, trained a few
SGD steps on the real MNIST subset (fan-in 784) with and without SparseOpt. Not on 8x8 digits: with fan-in 64
the sparsest neurons keep 1-2 weights, and since BN's gradient is orthogonal to w_i a 1-weight neuron gets no
gradient at all, which hides the effect (measured: slopes of the wrong sign). Per step the tracker gives each neuron's relative step
|Δw_i|/|w_i| and weight norm |w_i| against its density, and the log-log slopes. Expected (measured in §4b): the
first step's relative step depends strongly on density; from step 2 on its slope is about 0 with *and*
without the correction (BN's scale invariance: amplified neurons grow their norms), and what differs is the
weight-norm slope (the correction keeps the sparse-init scale).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import diagnostics
from ..data import load_cached
from ..fast import pick
from ..viz import column_layout
from .figure import LiveFigure

_RUN = inspect.signature(diagnostics.neuron_step_run).parameters  # its defaults: the setting measured in §4b


@dataclass(frozen=True)
class NeuronStepState:
    """The arguments of ``diagnostics.neuron_step_run``, with its defaults (their one home), and the data set."""

    steps: int = _RUN["steps"].default
    lr: float = _RUN["lr"].default
    hidden: int = _RUN["hidden"].default
    spread: float = _RUN["spread"].default
    norm: str = _RUN["norm"].default
    seed: int = _RUN["seed"].default
    batch_size: int = _RUN["batch_size"].default
    dataset: str = "mnist_subset"  # fan-in 784: digits' 64 leaves the sparsest neurons 1-2 weights (see below)


def _dataset(name: str):
    """The data set from the library's one cache (parsing the MNIST subset takes a second or two)."""
    return load_cached(name)


def track_neuron_steps(state: NeuronStepState, sparseopt: bool) -> list[dict]:
    """The tracker's records for ``state.steps`` SGD steps on layer fc1 (``diagnostics.neuron_step_run``)."""
    return diagnostics.neuron_step_run(
        _dataset(state.dataset), sparseopt=sparseopt, hidden=state.hidden, spread=state.spread, norm=state.norm,
        lr=state.lr, steps=state.steps, batch_size=state.batch_size, seed=state.seed)


class NeuronStepPanel:
    """Slopes over steps (left) and the per-neuron scatter at one step (right), both arms.

    Public API: ``NeuronStepPanel(state=None)``; ``.widget``, ``.figure``, ``.records[sparseopt]``,
    ``.controls["step"]`` (a slider: which step the scatter shows; it only redraws, no training),
    ``.show_step(t)``. Computed once at construction (a few seconds), then static.
    """

    def __init__(self, state: NeuronStepState | None = None):
        self.state = state or NeuronStepState(steps=pick(20, 10), hidden=pick(256, 128))
        self.records = {on: track_neuron_steps(self.state, on) for on in (False, True)}
        fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.11, subplot_titles=(
            "slope of relative step on density", "slope of weight norm on density", "relative step at step t"))
        colors = {False: "#1f77b4", True: "#d62728"}
        names = {False: "baseline (SGD)", True: "SparseOpt+SGD"}
        for on in (False, True):
            rec = self.records[on]
            steps = [r["step"] for r in rec]
            fig.add_trace(go.Scatter(x=steps, y=[r["slope_relative_step"] for r in rec], name=names[on],
                                     mode="lines+markers", line=dict(color=colors[on])), 1, 1)
            fig.add_trace(go.Scatter(x=steps, y=[r["slope_weight_norm"] for r in rec], showlegend=False,
                                     mode="lines+markers", line=dict(color=colors[on])), 1, 2)
            fig.add_trace(go.Scatter(x=rec[0]["density"].numpy(), y=rec[0]["relative_step"].numpy(),
                                     mode="markers", marker=dict(size=4, color=colors[on], opacity=0.6),
                                     showlegend=False), 1, 3)
        fig.update_xaxes(title_text="step", row=1, col=1)
        fig.update_xaxes(title_text="step", row=1, col=2)
        fig.update_xaxes(title_text="neuron density", type="log", row=1, col=3)
        fig.update_yaxes(title_text="|Δw_i| / |w_i|", type="log", row=1, col=3)
        fig.update_layout(title=dict(text=self._title(1)),
                          **column_layout(height=400, top=70, bottom=100))
        self.figure = LiveFigure(fig)
        self.controls = {"step": W.IntSlider(value=1, min=1, max=self.state.steps, description="step t",
                                             continuous_update=False)}
        self.controls["step"].observe(lambda ch: self.show_step(ch["new"]), names="value")
        self.widget = W.VBox([self.controls["step"], self.figure])

    def _title(self, t: int) -> str:
        b, s = self.records[False][t - 1], self.records[True][t - 1]
        return (f"step {t}: median relative step {b['median_relative_step']:.3f} (baseline) vs "
                f"{s['median_relative_step']:.3f} (SparseOpt)")

    def show_step(self, t: int) -> None:
        # Display-only: reads precomputed records, touches no model (safe from any thread).
        with self.figure.batch_update():
            for i, on in enumerate((False, True)):
                r = self.records[on][t - 1]
                self.figure.data[3 * i + 2].x, self.figure.data[3 * i + 2].y = r["density"].numpy(), r["relative_step"].numpy()
            self.figure.layout.title.text = self._title(t)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def display(self):
        from IPython.display import display

        display(self.widget)
