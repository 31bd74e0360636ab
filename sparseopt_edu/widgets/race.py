"""RacePanel (notebook 04): baseline vs SparseOpt, same everything else, several seeds drawn as bands.

Every race runs both arms: the masked baseline (SparseOpt(enabled=False), i.e. the plain optimizer on masked
gradients) and SparseOpt + the same optimizer. All runs (both arms, every seed) train side by side, one step
each per round, through the trainers' events, so both curves grow from the first seconds; in full mode the race
is paced to last about 30 s (``RaceState.min_race_s``), long enough to Stop it or drag the lr mid-run. Bands are
min..max over the seeds that have reached a point, the line their mean (``bands.band_over_seeds``).
docs/method.md §4b: at this scale the two arms overlap; the panel reports the gap against the seed spread and
does not claim more.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..bands import Band, band_over_seeds
from ..fast import is_fast, pick
from ..train.config import TrainConfig
from ..viz import column_layout
from .base import TrainingPanel, make_trainer, rename_traces
from .figure import LiveFigure

ARMS = (False, True)  # sparseopt off (baseline), on
MAX_POINTS = 300  # per curve sent to the browser; a longer one is thinned to every k-th point (``thin``)
COLORS = {False: "#1f77b4", True: "#d62728"}
FILL = {False: "rgba(31,119,180,0.18)", True: "rgba(214,39,40,0.18)"}


def trainer_lr(optimizer: str, lr: float) -> float:
    """The learning rate a run gets for the panel's ``lr``: SGD takes it as is, Adam (and AdamW) a tenth of it.

    One slider, two sensible ranges: SGD's 0.1 would be a very large step for Adam.
    """
    return lr if optimizer == "sgd" else lr / 10


def thin(n: int, most: int = MAX_POINTS) -> slice:
    """At most ``most`` of ``n`` points, every k-th from the first (a live curve is redrawn about 5 times a
    second: its cost grows with its length, what the eye sees does not); the newest point may wait up to k - 1
    points."""
    return slice(None, None, max(1, -(-n // most)))


def arm_name(sparseopt: bool, optimizer: str) -> str:
    opt = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}.get(optimizer, optimizer)
    return f"SparseOpt+{opt}" if sparseopt else f"{opt} (baseline)"


@dataclass(frozen=True)
class RaceState:
    """The whole race, seed included: the same state gives the same curves (on CPU).

    ``TrainConfig.<field>``: the library's default (so the race trains what ``sparseopt-edu compare`` trains);
    a number: the panel's own choice, with the reason.
    """

    norm: str = TrainConfig.norm
    sparsity: float = TrainConfig.sparsity
    optimizer: str = TrainConfig.optimizer
    method: str = TrainConfig.method
    seeds: int = 2  # the panel's: a band needs 2+ seeds (default(): 3, fast mode 2)
    lr: float = TrainConfig.lr  # SGD's; Adam gets trainer_lr's tenth of it
    seed: int = TrainConfig.seed
    model: str = TrainConfig.model
    dataset: str = TrainConfig.dataset
    hidden: int = TrainConfig.hidden
    epochs: int = 8  # the panel's: a race of a few minutes on a CPU (TrainConfig: 10; default(): 10, fast mode 4)
    batch_size: int = TrainConfig.batch_size
    delta_t: int = 20  # the panel's: many updates in a short run (TrainConfig: 100); notebook 04 measures it
    distribution: str = TrainConfig.distribution
    log_every: int = 5  # the panel's: a denser live loss curve (TrainConfig: 10)
    # The panel's: the race lasts at least this long (0: flat out). The full-mode race trains in 1-2 s on an
    # idle CPU, too fast to Stop half-way or drag the lr mid-run; pacing waits between rounds, changes no number.
    min_race_s: float = 0.0  # default(): 30 s in full mode, 0 in fast mode

    @classmethod
    def default(cls, **kw) -> RaceState:
        base = dict(seeds=pick(3, 2), epochs=pick(10, 4), delta_t=pick(20, 10), min_race_s=pick(30.0, 0.0))
        base.update(kw)
        return cls(**base)

    def configs(self) -> list[dict]:
        """TrainConfig dicts, in run order: seed by seed, baseline then SparseOpt.

        Only what the race sets; every other field (depth, momentum, nesterov, schedule, alpha, t_end, ...) is
        TrainConfig's default.
        """
        out = []
        for seed in range(self.seed, self.seed + self.seeds):
            for on in ARMS:
                out.append(dict(
                    model=self.model, dataset=self.dataset, norm=self.norm, hidden=self.hidden,
                    sparsity=self.sparsity, distribution=self.distribution, method=self.method, sparseopt=on,
                    optimizer=self.optimizer, lr=trainer_lr(self.optimizer, self.lr),
                    # the panel's: Adam without weight decay (TrainConfig's 5e-4 is SGD's)
                    weight_decay=TrainConfig.weight_decay if self.optimizer == "sgd" else 0.0,
                    batch_size=self.batch_size, epochs=self.epochs, delta_t=self.delta_t, seed=seed,
                    device="cpu" if is_fast() else "auto",  # fast mode: the CPU (TrainConfig: "auto")
                    cuda_graphs=False,  # the panel's since it was written (TrainConfig: "auto")
                    log_every=self.log_every,
                    eval_every_epochs=1,  # the test-accuracy curve has a point every epoch (the default too)
                ))
        return out


class Pace:
    """Stretch a race of ``rounds`` rounds to at least ``seconds``: round k ends no earlier than k/rounds of it
    after the first. Waits in short naps that end early on a stop, so Stop still acts within a round."""

    NAP_S = 0.05

    def __init__(self, seconds: float, rounds: int):
        self.seconds, self.rounds = max(float(seconds), 0.0), max(int(rounds), 1)
        self.done = 0
        self.t0 = time.perf_counter()

    def note(self) -> str:
        return f", paced to last at least {self.seconds:.0f} s" if self.seconds > 0 else ""

    def wait(self, stopped) -> None:
        self.done += 1
        if self.seconds <= 0:
            return
        until = self.t0 + self.seconds * self.done / self.rounds
        while (left := until - time.perf_counter()) > 0 and not stopped():
            time.sleep(min(left, self.NAP_S))


class RacePanel(TrainingPanel):
    """Live race with controls for norm, sparsity, optimizer, DST method, seeds (⟳) and learning rate (⚡).

    Public API: ``RacePanel(state=None, mode="auto")``; ``.widget``, ``.figure``, ``.state``
    (a :class:`RaceState`), ``.controls``, ``.buttons`` ("start", "stop", "reset"), ``.status``;
    ``run()`` (blocking in mode "blocking", else starts the worker), ``wait()``, ``set(**fields)``;
    results: ``.curves[sparseopt][seed]`` dicts of lists (step, loss, epoch, test_acc), ``summary()``,
    ``runs_done`` (list of (config, end reason)).
    For the learning rate, SGD uses ``lr`` and Adam ``lr / 10`` (one slider, two sensible ranges).
    """

    STRUCTURAL = ("norm", "sparsity", "optimizer", "method", "seeds")
    LIVE = ("lr",)

    def __init__(self, state: RaceState | None = None, mode: str = "auto"):
        super().__init__(state or RaceState.default(), mode)
        st = self.state
        sw = {"description_width": "80px"}
        self._bind("norm", W.Dropdown(options=[("BatchNorm", "bn"), ("LayerNorm", "ln"), ("GroupNorm", "gn"),
                                               ("no norm", "none")], value=st.norm, description="norm", style=sw))
        self._bind("sparsity", W.SelectionSlider(options=[0.5, 0.8, 0.9, 0.95, 0.97, 0.99], value=st.sparsity,
                                                 description="sparsity", style=sw))
        self._bind("optimizer", W.ToggleButtons(options=[("SGD vs SparseOpt+SGD", "sgd"),
                                                         ("Adam vs SparseOpt+Adam", "adam")],
                                                value=st.optimizer, description="optimizer",
                                                style={"button_width": "215px", **sw}))  # the Adam label whole
        self._bind("method", W.Dropdown(options=[("static", "static"), ("SET", "set"), ("RigL", "rigl"),
                                                 ("SRigL", "srigl")], value=st.method, description="DST", style=sw))
        self._bind("seeds", W.IntSlider(value=st.seeds, min=1, max=5, description="seeds", style=sw))
        self._bind("lr", W.FloatLogSlider(value=st.lr, base=10, min=-3, max=0, step=0.1, description="lr",
                                          readout_format=".3f", style=sw))
        self.curves: dict = {}
        self._sent: dict = {}  # (col, arm) -> what its traces show now (skip a redraw that would change nothing)
        self._generation = 0  # one per race: a new race's curves are new even where their lengths repeat
        self._named: str | None = None  # the optimizer the legend names
        self._title: str | None = None  # the title sent
        self.runs_done: list = []
        self.step = 0
        self._current = ""
        self.figure = self._build_figure()
        self._clear()
        self._show_idle("press Start")
        c = self.controls
        self.widget = W.VBox([
            W.HBox([c["norm"], c["method"], c["sparsity"]]), W.HBox([c["optimizer"], c["seeds"]]),
            W.HBox([c["lr"], self.buttons["start"], self.buttons["stop"], self.buttons["reset"]]),
            self.legend(), self.figure, self.status,
        ])

    # ----- figure ----------------------------------------------------------------------------------------
    def _build_figure(self) -> LiveFigure:
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                            subplot_titles=("training loss (band: min..max over seeds)", "test accuracy"))
        for col in (1, 2):
            for on in ARMS:
                fig.add_trace(go.Scatter(x=[], y=[], mode="lines", line=dict(width=0), showlegend=False,
                                         hoverinfo="skip"), 1, col)
                fig.add_trace(go.Scatter(x=[], y=[], mode="lines", line=dict(width=0), fill="tonexty",
                                         fillcolor=FILL[on], showlegend=False, hoverinfo="skip"), 1, col)
                fig.add_trace(go.Scatter(x=[], y=[], mode="lines" if col == 1 else "lines+markers",
                                         name=arm_name(on, self.state.optimizer), line=dict(color=COLORS[on]),
                                         showlegend=col == 1), 1, col)
        fig.update_xaxes(title_text="step", row=1, col=1)
        fig.update_yaxes(title_text="loss", type="log", row=1, col=1)
        fig.update_xaxes(title_text="epoch", row=1, col=2)
        # never past 1: around a single point (a race stopped in its first epoch) plotly's autorange ran to 1.8
        fig.update_yaxes(title_text="accuracy", autorangeoptions=dict(maxallowed=1.0), row=1, col=2)
        fig.update_layout(title=dict(text="race: idle"),
                          **column_layout(height=440, top=110, bottom=100))
        return LiveFigure(fig)

    @staticmethod
    def _index(col: int, on: bool, part: int) -> int:
        return (col - 1) * 6 + (3 if on else 0) + part

    def _trace(self, col: int, on: bool, part: int):
        return self.figure.data[self._index(col, on, part)]

    def _flush(self) -> None:
        """Send what changed since the last flush as one plotly update (issue 16 item 18: the figure flushes
        about 5 times a second; each flush re-sent all 12 traces as lists through plotly's per-property
        validation, 3.6-3.9% of a GPU race). A curve whose runs have no new point is skipped (test accuracy
        changes once an epoch), its band is recomputed only where runs grew (``_band``), values go as float
        arrays (None becomes NaN: the same gap; plotly compares and serializes arrays in bulk), long curves are
        thinned (``thin``), the title and legend go only when they change, and ``LiveFigure.set_values`` sends
        them without plotly's per-property checks (they are ours)."""
        st = self.state
        indexes, xs, ys = [], [], []
        for on in ARMS:
            runs = list(self.curves.get(on, {}).values())
            for col, xkey, ykey in ((1, "step", "loss"), (2, "epoch", "test_acc")):
                shown = (self._generation, tuple(len(r[ykey]) for r in runs))
                before = self._sent.get((col, on))
                if before is not None and before[0] == shown:
                    continue
                band = self._band(before, shown, [r[ykey] for r in runs])
                self._sent[(col, on)] = (shown, band)
                longest = max(runs, key=lambda r: len(r[xkey]))[xkey] if runs else []
                keep = thin(len(band.mean))
                # contiguous copies: a strided view cannot go out as a message buffer
                x = np.ascontiguousarray(np.asarray(longest[: len(band.mean)], dtype=np.float64)[keep])
                for part, values in enumerate((band.lo, band.hi, band.mean)):
                    indexes.append(self._index(col, on, part))
                    xs.append(x)
                    ys.append(np.ascontiguousarray(np.asarray(values, dtype=np.float64)[keep]))
        title = self.title_text()
        relayout = {"title.text": title} if title != self._title else {}
        self._title = title
        if indexes:
            self.figure.set_values(indexes, {"x": xs, "y": ys}, relayout)
        elif relayout:
            self.figure.plotly_relayout(relayout)
        if self._named != st.optimizer:
            rename_traces(self.figure, {self._index(col, on, 2): arm_name(on, st.optimizer)
                                        for col in (1, 2) for on in ARMS})
            self._named = st.optimizer

    @staticmethod
    def _band(before, shown, series) -> Band:
        """``band_over_seeds(series)``, recomputed only from the first index a run may have added a point at
        (runs only grow: below every run's previous length nothing changed)."""
        if before is None or before[0][0] != shown[0] or len(before[0][1]) != len(shown[1]):
            return band_over_seeds(series)
        old = before[1]
        start = min(before[0][1], default=0)
        tail = band_over_seeds([s[start:] for s in series])
        return Band(*(o[:start] + t for o, t in zip(old, tail)))

    def _redraw_all(self) -> None:
        """Voila's re-send (base.Panel) empties every trace, then flushes: everything must go again."""
        self._sent.clear()
        self._named = self._title = None
        super()._redraw_all()

    def title_text(self) -> str:
        st = self.state
        s = self.summary()
        head = (f"{arm_name(False, st.optimizer)} vs {arm_name(True, st.optimizer)} · {st.method} · "
                f"sparsity {st.sparsity:.2f} · {st.norm}")
        if s["done_pairs"]:
            head += (f"<br>final test acc {100 * s['acc'][False]:.1f}% vs {100 * s['acc'][True]:.1f}% "
                     f"(seed spread {100 * s['spread']:.1f} pts, {s['done_pairs']} seed(s))")
        return head

    def summary(self) -> dict:
        """Mean final test accuracy per arm over seeds that finished both arms, and the seed spread."""
        acc, done = {}, []
        for seed in sorted(set(self.curves.get(False, {})) & set(self.curves.get(True, {}))):
            pair = [self.curves[on][seed] for on in ARMS]
            if all(p["finished"] and p["test_acc"] for p in pair):
                done.append(seed)
        finals = {on: [self.curves[on][s]["test_acc"][-1] for s in done] for on in ARMS}
        for on in ARMS:
            acc[on] = float(np.mean(finals[on])) if done else float("nan")
        spread = max((max(v) - min(v) for v in finals.values() if len(v) > 1), default=0.0)
        gap = acc[True] - acc[False] if done else float("nan")
        return {"acc": acc, "gap": gap, "spread": spread, "done_pairs": len(done), "seeds": done}

    # ----- the loop --------------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.curves = {on: {} for on in ARMS}
        self.step = 0
        self._generation += 1
        self._flush()

    def _show_idle(self, word: str) -> None:
        self._status(word)

    def _status(self, word: str) -> None:
        st = self.state
        self.set_status(f"{word} · step {self.step} · sparsity {st.sparsity:.2f} · norm {st.norm} · optimizer "
                        f"{st.optimizer} vs SparseOpt+{st.optimizer} · DST {st.method} · seeds {st.seeds} · lr {st.lr:.3g} · "
                        f"{self._current} · "
                        f"{self.mode_text()}")

    def _train(self) -> bool:
        """Every run (both arms, every seed) side by side, one step each in turn, all steered by one handle that
        commits between rounds: a live learning-rate change then reaches all of them at the same step, so both
        arms are treated alike (run one after the other, a change mid-race would hit the later seeds and arms
        from their first step)."""
        self._clear()
        control = self._new_run_control(commit="manual")
        runs = []
        try:
            rounds = 0
            for cfg in self.state.configs():
                rec = {"step": [], "loss": [], "epoch": [], "test_acc": [], "finished": False}
                self.curves[cfg["sparseopt"]][cfg["seed"]] = rec
                cfg["lr"] = self._trainer_lr(self.state.lr)  # live value now
                trainer = make_trainer(cfg, [lambda ev, rec=rec: self._record(rec, ev)], control)
                runs.append((cfg, rec, trainer.iterate()))
                rounds = max(rounds, trainer.total_steps)  # one step per round; the round after ends it
            pace = Pace(self.state.min_race_s, rounds)
            self._current = f"{len(runs)} runs side by side (both arms, every seed)" + pace.note()
            active = list(runs)
            while active:
                control.commit()  # between rounds: every run takes a new LR at the same step
                self._note_live()
                for run in list(active):
                    if next(run[2], StopIteration) is StopIteration:
                        active.remove(run)
                        self.runs_done.append((run[0], run[1].get("reason")))
                if self.throttle.ready():
                    self._flush()
                    self._status("running")
                if active:
                    pace.wait(lambda: control.stop_requested or self.controller.stop_requested)
        finally:
            self.run_control = None
        self.throttle.force()
        self._flush()
        self.figure.keep_state()  # the finished race is what a front end that connects later draws (Voila)
        if control.stop_requested or self.controller.stop_requested:
            self._status("stopped")
            return True
        self._current = "all runs done"
        self._status("done")
        return False

    def _record(self, rec: dict, ev) -> None:
        if ev.kind == "step":
            self.step = max(self.step, ev.step)
            rec["step"].append(ev.step)
            rec["loss"].append(float(ev.data["loss"]))
        elif ev.kind == "epoch":
            rec["epoch"].append(ev.epoch)
            rec["test_acc"].append(float(ev.data["test_acc"]))
        elif ev.kind == "end":
            rec["finished"] = ev.data.get("reason") == "done"
            rec["reason"] = ev.data.get("reason")

    def _trainer_lr(self, lr: float) -> float:
        return trainer_lr(self.state.optimizer, lr)

    def set(self, **fields) -> None:
        for name, value in fields.items():
            self.controls[name].value = value

    def state_dict(self) -> dict:
        return asdict(self.state)
