"""SkewPanel (notebook 02): the paper's Fig. 3 and the per-neuron gradient-vs-density scatter, live.

Left: mean |gradient| per live weight of a sparse first layer over the same for the dense layer
(``diagnostics.gradient_ratio`` on real digits), measured along a sparsity grid for the chosen norm and without
normalisation, against the theory 1/sqrt(1 - s). Right: one layer whose neurons span a 30x range of densities
(``diagnostics.per_neuron_density_mask``): per-neuron mean |grad| against density, log-log, raw and with
SparseOpt's scale, with fitted slopes averaged over the seeds (theory -0.5 raw, 0 corrected; measured -0.4 to -0.47
per seed at fan-in 64, docs/method.md §2).
Results are cached per (sparsity, norm): moving the slider back costs nothing.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import diagnostics
from ..fast import pick
from ..viz import column_layout
from .base import Panel, rename_traces
from .controller import Requests
from .figure import LiveFigure

NORM_LABELS = {"bn": "BatchNorm", "ln": "LayerNorm", "gn": "GroupNorm", "none": "no norm"}


# The defaults of the measurements the panel draws (their one home): the Fig. 3 probe and notebook 02's check cell.
_RATIO = inspect.signature(diagnostics.gradient_ratio).parameters
_DIGITS = inspect.signature(diagnostics.default_probe_data).parameters
_SLOPE = inspect.signature(diagnostics.skew_slope).parameters


@dataclass(frozen=True)
class SkewState:
    """Everything that determines what the panel shows (seed included: same state, same picture)."""

    sparsity: float = 0.9
    norm: str = "bn"
    seeds: int = 3
    seed: int = 0
    hidden: int = _RATIO["hidden"].default
    n_samples: int = _DIGITS["n"].default
    fan_in: int = 64  # of the scatter's layer (Gaussian inputs, the derivation's assumption); notebook 02's value
    neurons: int = _SLOPE["neurons"].default  # the same layer as notebook 02's check cell (skew_slope's defaults)
    density_min: float = _SLOPE["density_range"].default[0]

    @classmethod
    def default(cls, **kw) -> SkewState:
        base = dict(seeds=pick(5, 3), n_samples=pick(1024, 512))
        base.update(kw)
        return cls(**base)


def sparsity_grid() -> list[float]:
    return pick([0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97], [0.0, 0.5, 0.8, 0.9, 0.95])


class SkewModel:
    """The computations behind the panel, cached; usable without any widget (tests, plain cells)."""

    def __init__(self, state: SkewState):
        self.state = state
        self._data = None
        self.ratio_cache: dict[tuple, dict] = {}
        self.scatter_cache: dict[tuple, dict] = {}

    def data(self):
        if self._data is None or self._data[0].shape[0] != self.state.n_samples:
            self._data = diagnostics.default_probe_data(self.state.n_samples)
        return self._data

    def ratio(self, sparsity: float, norm: str) -> dict:
        s = self.state
        key = (round(float(sparsity), 4), norm, s.seeds, s.seed, s.hidden, s.n_samples)
        if key not in self.ratio_cache:
            self.ratio_cache[key] = diagnostics.gradient_ratio(
                float(sparsity), norm, data=self.data(), hidden=s.hidden, seeds=range(s.seed, s.seed + s.seeds))
        return self.ratio_cache[key]

    def scatter(self, norm: str) -> dict:
        """Per-neuron |grad| vs density for one layer with a log-uniform density spread: the cloud of the first
        seed, the slopes averaged over ``seeds`` seeds (exactly what notebook 02's check cell measures)."""
        s = self.state
        key = (norm, s.seed, s.seeds, s.fan_in, s.neurons, s.density_min)
        if key in self.scatter_cache:
            return self.scatter_cache[key]
        runs = [diagnostics.density_spread_gradients(fan_in=s.fan_in, neurons=s.neurons,
                                                     density_range=(s.density_min, 1.0), norm=norm, seed=k)
                for k in range(s.seed, s.seed + s.seeds)]
        out = dict(runs[0])
        for name in ("slope_raw", "slope_corrected"):
            out[name] = sum(r[name] for r in runs) / len(runs)
            out[name + "_per_seed"] = [r[name] for r in runs]
        self.scatter_cache[key] = out
        return out


class SkewPanel(Panel):
    """Fig. 3 + per-neuron scatter with a sparsity slider, a norm toggle and a seeds control.

    Public API: ``SkewPanel(state=None, mode="auto")``; ``.widget`` (the box), ``.figure`` (the FigureWidget),
    ``.state`` (a :class:`SkewState`), ``.controls`` (name -> widget), ``.status``, ``.model`` (the cached
    computations), ``.title_text()``; ``set(**fields)`` changes controls from code (same path as a click).
    """

    STRUCTURAL = ("sparsity", "norm", "seeds")

    def __init__(self, state: SkewState | None = None, mode: str = "auto"):
        super().__init__(state or SkewState.default(), mode)
        self.model = SkewModel(self.state)
        st = self.state
        self._bind("sparsity", W.FloatSlider(value=st.sparsity, min=0.0, max=0.97, step=0.01, description="sparsity",
                                             readout_format=".2f", continuous_update=False,
                                             style={"description_width": "80px"}))
        self._bind("norm", W.ToggleButtons(options=[(NORM_LABELS[n], n) for n in diagnostics.NORMS],
                                           value=st.norm, description="norm", style={"button_width": "110px"}))
        self._bind("seeds", W.BoundedIntText(value=st.seeds, min=1, max=10, description="seeds",
                                             layout=W.Layout(width="160px")))
        # Drawn before it becomes a widget: a FigureWidget's synced state is the figure it was built from, and
        # later edits travel as update messages, which Voila drops while it executes the notebook (ENV.md). Drawn
        # into the widget instead, the dashboard showed the empty build ("computing…", only the theory curve).
        drawn = self._build_figure()
        self._draw(drawn)
        self.figure = LiveFigure(drawn)
        controls = W.VBox([W.HBox([self.controls["sparsity"], self.controls["seeds"]]), self.controls["norm"],
                           self.legend()])
        self.widget = W.VBox([controls, self.figure, self.status])

    # ----- figure ----------------------------------------------------------------------------------------
    def _build_figure(self) -> go.Figure:
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
            "gradient ratio, sparse / dense layer (Fig. 3)", "per-neuron |grad| vs neuron density"))
        s_theory = np.linspace(0.0, 0.97, 60)
        fig.add_trace(go.Scatter(x=s_theory, y=1 / np.sqrt(1 - s_theory), name="theory 1/sqrt(1-s)",
                                 line=dict(dash="dash", color="gray")), 1, 1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name="measured, norm", line=dict(color="#d62728")), 1, 1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name="measured, no norm",
                                 line=dict(color="#1f77b4")), 1, 1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="slider's sparsity",
                                 marker=dict(size=14, color="black", symbol="x")), 1, 1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="raw |grad|", marker=dict(size=5, color="#d62728", opacity=0.6)), 1, 2)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name="raw fit", line=dict(color="#d62728")), 1, 2)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="SparseOpt-corrected",
                                 marker=dict(size=5, color="#2ca02c", opacity=0.6)), 1, 2)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name="corrected fit", line=dict(color="#2ca02c")), 1, 2)
        fig.update_xaxes(title_text="sparsity s", range=[-0.02, 1.0], row=1, col=1)
        fig.update_yaxes(title_text="ratio", rangemode="tozero", row=1, col=1)
        fig.update_xaxes(title_text="neuron density (1 - s_i)", type="log", row=1, col=2)
        fig.update_yaxes(title_text="mean |grad| per live weight", type="log", row=1, col=2)
        fig.update_layout(title=dict(text="computing…"),
                          **column_layout(height=460, top=90, bottom=120))
        return fig

    def title_text(self) -> str:
        st = self.state
        r = self.model.ratio(st.sparsity, st.norm)
        sc = self.model.scatter(st.norm)
        return (f"ratio at s={st.sparsity:.2f}: {r['ratio']:.2f} (theory {r['theory']:.2f}) · "
                f"{NORM_LABELS[st.norm]} · slope {sc['slope_raw']:+.2f} raw, {sc['slope_corrected']:+.2f} corrected")

    def _redraw(self) -> None:
        self._draw(self.figure)
        self.figure.keep_state()  # a reload, or a front end that connects later, draws this redraw

    def _draw(self, figure: go.Figure) -> None:
        """The current state's curves, scatter and title into ``figure`` (the widget, or the figure it is built
        from), and the status line."""
        st = self.state
        self.model.state = st
        grid = sorted(set(sparsity_grid()) | {round(st.sparsity, 4)})
        measured = [self.model.ratio(s, st.norm) for s in grid]
        plain = [self.model.ratio(s, "none") for s in grid] if st.norm != "none" else []
        point = self.model.ratio(st.sparsity, st.norm)
        sc = self.model.scatter(st.norm)
        d = sc["density"].numpy()
        xs = np.array([d.min(), d.max()])

        def fit(values, slope):
            v = values.numpy()
            c = np.exp(np.mean(np.log(v)) - slope * np.mean(np.log(d)))
            return c * xs ** slope

        with figure.batch_update():
            f = figure.data
            f[1].x, f[1].y = grid, [m["ratio"] for m in measured]
            f[2].x, f[2].y = (grid, [m["ratio"] for m in plain]) if plain else ([], [])
            f[3].x, f[3].y = [st.sparsity], [point["ratio"]]
            f[4].x, f[4].y = d, sc["raw"].numpy()
            f[5].x, f[5].y = xs, fit(sc["raw"], sc["slope_raw"])
            f[6].x, f[6].y = d, sc["corrected"].numpy()
            f[7].x, f[7].y = xs, fit(sc["corrected"], sc["slope_corrected"])
            figure.layout.title.text = self.title_text()
        rename_traces(figure, {1: f"measured, {NORM_LABELS[st.norm]}",
                               5: f"raw fit, slope {sc['slope_raw']:+.2f}",
                               7: f"corrected fit, slope {sc['slope_corrected']:+.2f}"})
        self.set_status(f"sparsity {st.sparsity:.2f} · norm {st.norm} · seeds {st.seeds} (from seed {st.seed}) · "
                        f"ratio {point['ratio']:.2f} ± {point['std']:.2f}, theory {point['theory']:.2f} · "
                        f"{self.mode_text()}")

    def _handle(self, req: Requests) -> None:
        self._apply_params(req)
        self.set_status("computing…")
        self._redraw()

    def set(self, **fields) -> None:
        """Move controls from code (exactly what a learner's click does)."""
        for name, value in fields.items():
            self.controls[name].value = value
