"""What every panel shares: one UI-state dataclass, one controller, one serving loop, a status line.

Flow of a click: callback -> ``controller`` (a request, nothing else) -> ``_kick()`` -> the serving loop takes
the requests between steps and is the only code that touches models, optimizers and figures. Whoever holds the
controller's ``serving`` claim *is* the loop: the calling cell (mode "blocking"), or a daemon worker thread
(mode "thread", and any Start click that arrives while nothing is serving).
"""
from __future__ import annotations

import dataclasses
import html
import threading
import traceback

import ipywidgets as W

from .controller import Controller, Requests, Throttle, detect_frontend, pick_mode

# The status line's last part: what the controls do, for a learner. Panels without a run recompute their figure;
# a training panel trains in its cell ("blocking": the cell is busy while it trains) or in the background.
MODE_TEXT = {
    "recompute": "move a control: the figure recomputes",
    "blocking": "press Start to train, Stop to end a run",
    "thread": "press Start to train, Stop to end a run; the notebook stays free meanwhile",
}
#: Voila drops widget updates made while it still executes the notebook, and the cells after a finished run may
#: take a while (a first run in a fresh environment imports and loads data): re-send the final state this long
#: after a background run ends, until well after any execution is over (each re-send is one redraw)
RESEND_DELAYS_S = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)
STRUCTURAL_MARK = "⟳"
LIVE_MARK = "⚡"


def rename_traces(fig, names: dict[int, str]) -> None:
    """Set trace names (index -> name) in a batch of their own, after the batch that moved the data.

    Why not in the data batch: plotly sends one batched restyle whose ``name`` list holds "undefined" for every
    edited trace whose name did not change, and plotly.js resets those names to its default "trace N" (seen in
    notebook 02's legend). A batch that sets the same properties on every trace it touches is safe.
    """
    changed = {i: n for i, n in names.items() if fig.data[i].name != n}
    if changed:
        with fig.batch_update():
            for i, n in changed.items():
                fig.data[i].name = n


def route_to_frontend_subshell(widget) -> bool:
    """Let the kernel run this widget's callbacks on the subshell the front end sends its messages to.

    Why: JupyterLab (``commsOverSubshells=perCommTarget``, which the project ships) sends every widget message on
    a kernel subshell, so a Stop click could run while the main shell trains in a cell. But ipykernel 7.4
    re-routes a comm's incoming messages to the shell that last *published* on that comm
    (``Comm._reply_subshell_for``, meant for a front-end reply to a request the kernel sent from a subshell). For a
    widget made in a cell that is the main shell, busy with the very run the click must stop: the click waited
    for the cell to end (measured, tests/browser/test_interactions.py). Our controls send no such requests, so
    their messages may go where the front end sent them. Without that hook (ipykernel < 7.4, no kernel, a
    front end without subshells) nothing changes. Returns whether the route was set.
    """
    comm = getattr(widget, "comm", None)
    if comm is None or not callable(getattr(comm, "_reply_subshell_for", None)):
        return False
    comm._reply_subshell_for = _subshell_the_frontend_chose
    return True


def _subshell_the_frontend_chose(data, frontend_subshell):
    return frontend_subshell


def make_trainer(cfg: dict, callbacks: list, control=None):
    """The library's :class:`~sparseopt_edu.train.Trainer` for a panel's config dict (TrainConfig field names; the
    panel state's UI-only keys are dropped), with the panel's callbacks and its run's control handle."""
    from ..train import TrainConfig, Trainer

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return Trainer(TrainConfig(**{k: v for k, v in cfg.items() if k in names}), callbacks=callbacks, control=control)


class Panel:
    """Base class. Subclasses set ``STRUCTURAL``/``LIVE`` (state field names) and implement ``_handle``."""

    STRUCTURAL: tuple = ()
    LIVE: tuple = ()
    TRAINS = False  # True: a pending start means a long run; a callback must not serve it in place

    def __init__(self, state, mode: str = "auto"):
        self.state = state
        self.mode = pick_mode(mode)
        self.frontend = detect_frontend()
        self.controller = Controller()
        self.throttle = Throttle(5.0)
        self.controls: dict[str, W.Widget] = {}
        self.status = W.HTML(value="")
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.widget: W.Box | None = None

    # ----- display ---------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def display(self):
        from IPython.display import display

        display(self.widget)

    def legend(self) -> W.HTML:
        s = ", ".join(self._label(n) for n in self.STRUCTURAL)
        what = "restarts the run" if self.TRAINS else "recomputes the figure"
        text = f"<small>{STRUCTURAL_MARK} {what}: {s}"
        if self.LIVE:
            text += f" &nbsp;·&nbsp; {LIVE_MARK} applies live, mid-run: {', '.join(self._label(n) for n in self.LIVE)}"
        return W.HTML(text + "</small>")

    @staticmethod
    def _label(name: str) -> str:
        return name.replace("_", " ")

    def _bind(self, name: str, widget: W.ValueWidget) -> W.ValueWidget:
        """Register a control for state field ``name``: its callback writes a request, nothing else."""
        mark = LIVE_MARK if name in self.LIVE else STRUCTURAL_MARK
        if getattr(widget, "description", None) is not None:
            widget.description = f"{mark} {widget.description}"
        if name in self.STRUCTURAL and hasattr(widget, "continuous_update"):
            widget.continuous_update = False  # a restart per drag position would be useless
        widget.observe(lambda change, _n=name: self._on_change(_n, change["new"]), names="value")
        if self.TRAINS:  # a control of a run must reach it while the run's cell is busy
            route_to_frontend_subshell(widget)
        self.controls[name] = widget
        return widget

    def _on_change(self, name, value):
        self.controller.set_param(name, value, structural=name in self.STRUCTURAL)
        self._steer(name, value)
        self._kick()

    def _steer(self, name, value) -> None:
        """Training panels tell the run in progress directly (its RunControl); others have nothing to steer."""

    def mode_text(self) -> str:
        """What a learner can do now, in their words (not how the panel runs: that is ``self.mode``)."""
        if not self.TRAINS:
            return MODE_TEXT["recompute"]
        return MODE_TEXT[self.mode]

    def set_status(self, text: str) -> None:
        self.status.value = f"<code>{html.escape(text)}</code>"

    # ----- the serving loop ------------------------------------------------------------------------------
    def _apply_params(self, req: Requests) -> None:
        valid = {f.name for f in dataclasses.fields(self.state)}
        changes = {k: v for k, v in req.params.items() if k in valid}
        if changes:
            self.state = dataclasses.replace(self.state, **changes)

    def _kick(self) -> None:
        """Make sure someone serves the pending requests: the loop already running, here, or a worker."""
        if not self.controller.claim():
            return  # a loop serves; it takes the request between steps
        start_pending = self.controller._req.start  # read under the claim: no other loop can take it now
        if self.mode == "thread" or (self.TRAINS and start_pending):
            self._thread = threading.Thread(target=self._serve_quietly, name=f"{type(self).__name__}-loop",
                                            daemon=True)
            self._thread.start()
        else:
            self._serve()

    def _serve(self) -> None:
        try:
            while True:
                req = self.controller.take()
                if not req.empty:
                    self._handle(req)
                if self.controller.release():
                    return
        except BaseException:
            with self.controller._lock:
                self.controller.serving = False
            raise

    def _serve_quietly(self) -> None:
        self.error = None  # wait() reports this loop's failure only, never a finished earlier one
        try:
            self._serve()
        except BaseException as exc:  # a worker thread has nobody to raise to: show it
            self.error = exc
            self.set_status(f"error: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        else:
            if self.frontend == "voila":
                for delay in RESEND_DELAYS_S:
                    t = threading.Timer(delay, self._resend)
                    t.daemon = True
                    t.start()

    def _resend(self) -> None:
        """Voila drops widget updates made while it still executes the notebook (ENV.md): a run that ended
        during execution would leave an empty figure. Re-send the final state a few seconds later, holding the
        serving claim like any loop (skipped if a new run serves)."""
        if not self.controller.claim():
            return
        try:
            self._redraw_all()
        finally:
            with self.controller._lock:
                self.controller.serving = False
        if not self.controller._req.empty:
            self._kick()

    def _redraw_all(self) -> None:
        """Send every trace and the title again (subclasses with figures override ``_flush``)."""
        fig = getattr(self, "figure", None)
        flush = getattr(self, "_flush", None)
        if fig is None or flush is None:
            return
        with fig.batch_update():
            for trace in fig.data:
                trace.x, trace.y = [], []
            fig.layout.title.text = " "
        flush()
        self.status.value = self.status.value + " "  # a changed value is sent again

    def _handle(self, req: Requests) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> None:
        """Join the worker thread, if any (tests and notebooks use it after a thread-mode start)."""
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self.error is not None:
            raise self.error

    @property
    def running(self) -> bool:
        return self.controller.serving


class TrainingPanel(Panel):
    """A panel whose loop trains: Start / Stop / Reset buttons, restart on structural changes."""

    TRAINS = True

    def __init__(self, state, mode: str = "auto"):
        super().__init__(state, mode)
        self._resume = False
        self._shown: dict | None = None  # the structural settings of the run the figure shows (None: no run)
        self.buttons = {
            "start": W.Button(description="Start", button_style="success", icon="play"),
            "stop": W.Button(description="Stop", button_style="danger", icon="stop"),
            "reset": W.Button(description="Reset", button_style="", icon="refresh"),
        }
        for button in self.buttons.values():  # Stop must reach a run that trains in a busy cell (run())
            route_to_frontend_subshell(button)
        self.run_control = None  # the RunControl of the run in progress (None between runs)
        self.buttons["start"].on_click(lambda _b: (self.controller.request_start(), self._stop_run(), self._kick()))
        self.buttons["stop"].on_click(lambda _b: (self.controller.request_stop(), self._stop_run()))
        self.buttons["reset"].on_click(lambda _b: (self.controller.request_reset(), self._stop_run(), self._kick()))

    def run(self, wait: bool = True) -> None:
        """Start a run. Mode "blocking": train here until done or stopped (the cell is busy; in JupyterLab the
        buttons and controls reach the run on a kernel subshell, see ``route_to_frontend_subshell``). Mode
        "thread": start the worker and return (``wait()`` joins it)."""
        self.controller.request_start()
        if self.mode == "thread":
            self._kick()
            return
        if self.controller.claim():
            self._serve()
        elif wait:
            self.wait()

    def _handle(self, req: Requests) -> None:
        self._apply_params(req)
        if req.reset:
            self._clear()
            self._shown = None
        restart = req.start or (self._resume and req.structural and not (req.stop or req.reset))
        self._resume = False
        if restart:
            self._shown = self._structural_settings()
            self._resume = self._train()
            return
        word = "stopped" if req.stop else ("reset" if req.reset else "idle")
        stale = self._stale_settings()
        if stale:  # the status names the new settings; say that the figure still shows the old run
            old = ", ".join(f"{self._label(k)} {v}" for k, v in stale.items())
            word = f"new settings not run yet (the figure shows the last run: {old}); press Start"
        self._show_idle(word)

    def _structural_settings(self) -> dict:
        return {name: getattr(self.state, name) for name in self.STRUCTURAL if hasattr(self.state, name)}

    def _stale_settings(self) -> dict:
        """Structural settings of the run on the figure that differ from the current ones ({} if none)."""
        if self._shown is None:
            return {}
        now = self._structural_settings()
        return {k: v for k, v in self._shown.items() if now.get(k) != v}

    def _stop_run(self) -> None:
        control = self.run_control
        if control is not None:
            control.stop()

    def _steer(self, name, value) -> None:
        """A live control goes straight to the run in progress (a race's runs share one handle, so every arm and
        seed switches at the same step); a structural one ends it (the serving loop then restarts it)."""
        control = self.run_control
        if control is None:
            return
        if name in self.STRUCTURAL:
            control.stop()
        elif name == "lr":
            control.set_lr(self._trainer_lr(float(value)))

    def _new_run_control(self, commit: str = "auto"):
        """The handle of the next run: requests made from now on reach it."""
        from ..train.control import RunControl

        self.run_control = RunControl(commit)
        if self.controller.stop_requested:  # a click that came while the run was being set up
            self.run_control.stop()
        return self.run_control

    def _note_live(self) -> None:
        """Between steps: show the live values the run already follows (the status reads ``self.state``)."""
        live = self.controller.peek_live(self.LIVE)
        if live:
            self.state = dataclasses.replace(self.state, **live)

    def _trainer_lr(self, lr: float) -> float:
        return lr

    # subclasses
    def _train(self) -> bool:
        raise NotImplementedError

    def _clear(self) -> None:
        raise NotImplementedError

    def _show_idle(self, word: str) -> None:
        raise NotImplementedError
