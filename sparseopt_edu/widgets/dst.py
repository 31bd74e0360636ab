"""DSTPanel (notebook 03): watch SET / RigL / SRigL change the topology while the network trains.

Subscribes to the trainer's "topology" events (docs/TRAINER_API.md: ``itop``, ``changed``, ``slope_raw``,
``slope_corrected``, ``rotation_deg``) and draws, live: the fan-in histogram of the hidden layer fc1 (at the
start in gray, now in color), the fan-in heterogeneity of that same histogram (coefficient of variation, std /
mean of live weights per neuron) per update, the ITOP rate (Liu et al. 2021) and the skew slope (log |grad| on
log density) of the gradient that triggers each update (the trainer measures it under the mask trained with). Only fc1 is sparse (the head stays dense, as in notebook 03's
by-hand cell), so all four plots are of one layer: the trainer's layer means (``fan_in_cv``, the slope) would
otherwise mix in the head, whose dense rows have CV 0 and halved the CV the panel showed. docs/method.md §1:
layer-wide top-k drop/grow lets per-neuron fan-ins drift apart, so the skew is re-shaped at every update; SRigL
keeps fan-in constant.
"""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import diagnostics
from ..fast import is_fast, pick
from ..train.config import TrainConfig
from ..viz import column_layout
from .base import TrainingPanel, make_trainer
from .controller import Throttle
from .figure import LiveFigure

METHOD_LABELS = {"static": "static", "set": "SET", "rigl": "RigL", "srigl": "SRigL"}
LAYER = "fc1"  # the one sparse layer (config(): the head is dense): every plot is of this layer
SLOPE_TITLE = f"skew slope of {LAYER} at each update"  # the gradient that triggers it, under the old mask
# A slope needs neurons at >= 3 different densities (engine._skew_summary gives None otherwise): SRigL's
# constant fan-in leaves at most two (B // n and B // n + 1 weights), so there is nothing to fit, by design.
NO_SLOPE = "no slope to fit: equal fan-ins (±1 weight)"


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def histogram_cv(hist: list[int]) -> float | None:
    """Coefficient of variation (sample std / mean) of the fan-ins a histogram counts (``hist[k]`` neurons with
    k live weights): the statistic the CV plot shows, computed from the histogram plot's own numbers."""
    n = sum(hist)
    if n < 2:
        return None
    mean = sum(k * h for k, h in enumerate(hist)) / n
    if mean <= 0:
        return None
    var = sum(h * (k - mean) ** 2 for k, h in enumerate(hist)) / (n - 1)
    return var ** 0.5 / mean


@dataclass(frozen=True)
class DSTState:
    """``TrainConfig.<field>``: the library's default; a literal: the panel's own choice, with the reason."""

    method: str = TrainConfig.method
    sparsity: float = TrainConfig.sparsity
    norm: str = TrainConfig.norm
    sparseopt: bool = False  # the panel's: notebook 03 starts raw, then asks to tick SparseOpt (TrainConfig: on)
    delta_t: int = 20  # the panel's: many updates to watch in a short run (TrainConfig: 100)
    alpha: float = TrainConfig.alpha
    lr: float = TrainConfig.lr
    seed: int = TrainConfig.seed
    dataset: str = "mnist_subset"  # the panel's: real MNIST, fan-in 784, as notebook 03 says (TrainConfig: digits)
    hidden: int = TrainConfig.hidden
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    log_every: int = 5  # the panel's: the status's step count moves every 5 steps (TrainConfig: 10)
    n_train: int | None = TrainConfig.n_train
    n_test: int | None = TrainConfig.n_test

    @classmethod
    def default(cls, **kw) -> DSTState:
        base = dict(epochs=pick(10, 3), delta_t=pick(20, 5), hidden=pick(256, 128), n_train=pick(None, 2000),
                    n_test=pick(None, 500))
        base.update(kw)
        return cls(**base)

    def config(self) -> dict:
        """A TrainConfig dict: what the panel sets; every other field (optimizer, momentum, schedule, t_end,
        distribution, grow_from, ...) is TrainConfig's default."""
        return dict(model="mlp",  # the panel's text and histogram are the MLP's hidden layer (the default too)
                    dense_layers=("head",),  # the panel's: fc1 is the one sparse layer, so every plot is of it
                    dataset=self.dataset, norm=self.norm, hidden=self.hidden,
                    sparsity=self.sparsity, method=self.method, sparseopt=self.sparseopt,
                    lr=self.lr, batch_size=self.batch_size, epochs=self.epochs, delta_t=self.delta_t,
                    alpha=self.alpha, seed=self.seed,
                    device="cpu" if is_fast() else "auto",  # fast mode: the CPU (TrainConfig: "auto")
                    cuda_graphs=False,  # the panel's since it was written (TrainConfig: "auto")
                    log_every=self.log_every,
                    skew_every="update",  # the slope plot needs the skew at every update (the default too)
                    n_train=self.n_train, n_test=self.n_test)


class DSTPanel(TrainingPanel):
    """Live DST: fan-in histogram, fan-in CV, ITOP and skew slope at every topology update.

    Public API: ``DSTPanel(state=None, mode="auto")``; ``.widget``, ``.figure``, ``.state``
    (a :class:`DSTState`), ``.controls``, ``.buttons``, ``.status``, ``run()``, ``wait()``, ``set(**fields)``;
    ``.updates`` (one dict per topology event: step, itop, fan_in_cv (of fc1's histogram), slope_raw,
    slope_corrected, rotation_deg, changed), ``.hist0`` / ``.hist`` (fc1's fan-in histograms at the start / now).
    """

    STRUCTURAL = ("method", "sparsity", "norm", "sparseopt", "delta_t")
    LIVE = ("lr",)

    def __init__(self, state: DSTState | None = None, mode: str = "auto"):
        super().__init__(state or DSTState.default(), mode)
        st = self.state
        sw = {"description_width": "80px"}
        self._bind("method", W.ToggleButtons(options=[(v, k) for k, v in METHOD_LABELS.items()], value=st.method,
                                             description="DST", style={"button_width": "70px", **sw}))
        self._bind("sparsity", W.SelectionSlider(options=[0.5, 0.8, 0.9, 0.95, 0.97], value=st.sparsity,
                                                 description="sparsity", style=sw))
        self._bind("norm", W.Dropdown(options=[("BatchNorm", "bn"), ("LayerNorm", "ln"), ("no norm", "none")],
                                      value=st.norm, description="norm", style=sw))
        self._bind("sparseopt", W.Checkbox(value=st.sparseopt, description="SparseOpt", indent=False))
        self._bind("delta_t", W.IntSlider(value=st.delta_t, min=5, max=100, step=5, description="ΔT", style=sw))
        self._bind("lr", W.FloatLogSlider(value=st.lr, base=10, min=-3, max=0, step=0.1, description="lr",
                                          readout_format=".3f", style=sw))
        self.topology_throttle = Throttle(20.0)  # redraws at topology updates (``throttle``: between them)
        self.updates: list[dict] = []
        self.hist0: list[int] = []
        self.hist: list[int] = []
        self.step = 0
        self.figure = self._build_figure()
        self._show_idle("press Start")
        c = self.controls
        self.widget = W.VBox([
            c["method"], W.HBox([c["sparsity"], c["norm"], c["sparseopt"]]),
            W.HBox([c["delta_t"], c["lr"], self.buttons["start"], self.buttons["stop"], self.buttons["reset"]]),
            self.legend(), self.figure, self.status,
        ])

    def _build_figure(self) -> LiveFigure:
        fig = make_subplots(rows=2, cols=2, vertical_spacing=0.24, horizontal_spacing=0.12, subplot_titles=(
            f"fan-in histogram of {LAYER} (gray: at start)", f"{LAYER} fan-in CV: std / mean of that histogram",
            "ITOP rate (union of masks seen)", SLOPE_TITLE))
        fig.add_trace(go.Bar(x=[], y=[], name="at start", marker_color="lightgray"), 1, 1)
        fig.add_trace(go.Bar(x=[], y=[], name="now", marker_color="#d62728", opacity=0.7), 1, 1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=f"fan-in CV of {LAYER}",
                                 line=dict(color="#9467bd")), 1, 2)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name="ITOP", line=dict(color="#2ca02c")), 2, 1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name="slope raw", line=dict(color="#d62728")), 2, 2)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name="slope corrected",
                                 line=dict(color="#1f77b4", dash="dot")), 2, 2)
        # No fixed width: the figure fits the notebook column (viz.column_layout); the row gap leaves room
        # for row 1's x-axis titles above row 2's subplot titles, the bottom margin for the legend.
        fig.update_layout(barmode="overlay", title=dict(text="DST: idle"),
                          **column_layout(height=640, top=110, bottom=100))
        fig.update_xaxes(title_text="live weights per neuron", row=1, col=1)
        fig.update_yaxes(title_text="neurons", row=1, col=1)
        fig.update_yaxes(title_text="CV", rangemode="tozero", row=1, col=2)
        for r, c in ((1, 2), (2, 1), (2, 2)):
            fig.update_xaxes(title_text="step", row=r, col=c)
        return LiveFigure(fig)

    def title_text(self) -> str:
        st = self.state
        head = f"{METHOD_LABELS[st.method]} · sparsity {st.sparsity:.2f} · {st.norm} · step {self.step}"
        if self.updates:
            u = self.updates[-1]
            slope = (NO_SLOPE if u["slope_raw"] is None else f"slope {u['slope_raw']:+.2f} raw")
            head += (f"<br>update {len(self.updates)}: ITOP {_fmt(u['itop'], '.2f')} · "
                     f"fan-in CV of {LAYER} {_fmt(histogram_cv(self.hist0), '.2f')} at start, "
                     f"{_fmt(u['fan_in_cv'], '.2f')} now · {slope}")
        return head

    def _slope_title(self) -> str:
        """The skew-slope subplot's title; says why it stays empty when no update had a slope to fit (SRigL)."""
        if self.updates and all(r["slope_raw"] is None for r in self.updates):
            return f"{LAYER} skew slope: none to fit (equal fan-ins)"  # short: a title does not wrap
        return SLOPE_TITLE

    def _flush(self) -> None:
        u = self.updates
        steps = [r["step"] for r in u]
        top = max([i for h in (self.hist0, self.hist) for i, v in enumerate(h) if v] or [0]) + 2
        with self.figure.batch_update():
            d = self.figure.data
            d[0].x, d[0].y = list(range(min(top, len(self.hist0)))), self.hist0[:top]
            d[1].x, d[1].y = list(range(min(top, len(self.hist)))), self.hist[:top]
            cv0 = [histogram_cv(self.hist0)] if self.hist0 else []  # the start: the CV before any update
            d[2].x, d[2].y = [0] * len(cv0) + steps, cv0 + [r["fan_in_cv"] for r in u]
            d[3].x, d[3].y = steps, [r["itop"] for r in u]
            d[4].x, d[4].y = steps, [r["slope_raw"] for r in u]
            d[5].x, d[5].y = steps, [r["slope_corrected"] for r in u]
            self.figure.layout.title.text = self.title_text()
            self.figure.layout.annotations[3].text = self._slope_title()

    def _clear(self) -> None:
        self.updates, self.hist0, self.hist, self.step = [], [], [], 0
        self._flush()

    def _show_idle(self, word: str) -> None:
        st = self.state
        self.set_status(f"{word} · step {self.step} · sparsity {st.sparsity:.2f} · norm {st.norm} · optimizer "
                        f"{'SparseOpt+' if st.sparseopt else ''}sgd · DST {st.method} · updates {len(self.updates)} · "
                        f"{self.mode_text()}")

    @staticmethod
    def _first_hist(masks) -> list[int]:
        """fc1's fan-in histogram (neurons per live-weight count) under ``masks``."""
        if list(masks.names) != [LAYER]:
            raise RuntimeError(f"the DST panel draws one sparse layer, {LAYER!r}; this run masks {list(masks.names)}"
                               f" (DSTState.config() keeps the head dense: was dense_layers changed?)")
        return diagnostics.mask_report(masks)["layers"][LAYER]["fan_in_histogram"]

    def _train(self) -> bool:
        self._clear()
        reason = {"end": None}
        control = self._new_run_control()
        trainer = None

        def callback(ev):
            self._note_live()
            if ev.kind != "topology":  # on a GPU a topology event arrives a few steps after its update
                self.step = ev.step
            if ev.kind == "start":
                self.hist0 = self.hist = self._first_hist(trainer.masks)
            elif ev.kind == "topology":
                self.hist = self._first_hist(trainer.masks)  # the masks of the run this panel built
                self.updates.append({"step": ev.step, "fan_in_cv": histogram_cv(self.hist), **{
                    k: ev.data.get(k) for k in ("itop", "slope_raw", "slope_corrected", "rotation_deg", "changed")}})
            elif ev.kind == "end":
                reason["end"] = ev.data.get("reason")
            # The four plots change only at a topology update: draw each one when it arrives (at most
            # ``topology_throttle``'s rate, for ΔT steps faster than the eye); between updates, the step count
            # and the status follow at the slower ``throttle`` rate.
            if ev.kind == "topology" and self.topology_throttle.ready():
                self.throttle.force()  # the next step-rate redraw waits a full interval after this one
                redraw = True
            else:
                redraw = self.throttle.ready()
            if redraw:
                self._flush()
                self._show_idle("running")

        try:
            trainer = make_trainer(self.state.config(), [callback], control)
            trainer.run()
        finally:
            self.run_control = None
        self.throttle.force()
        self._flush()
        self.figure.keep_state()  # the finished run is what a front end that connects later draws (Voila)
        interrupted = reason["end"] == "stopped" or control.stop_requested or self.controller.stop_requested
        self._show_idle("stopped" if interrupted else "done")
        return interrupted

    def set(self, **fields) -> None:
        for name, value in fields.items():
            self.controls[name].value = value
