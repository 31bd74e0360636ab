"""What every panel shares: one UI-state dataclass, one controller, one serving loop, a status line.

Flow of a click: callback -> ``controller`` (a request; the run in progress hears it under the same lock: stop,
or a live value) -> ``_kick()`` -> the serving loop takes the requests between steps and is the only code that
touches models, optimizers and figures. Whoever holds the controller's ``serving`` claim *is* the loop: the
calling cell (mode "blocking"), or a daemon worker thread (mode "thread", and any request that would train while
a callback serves: the claim passes to the worker).
"""
from __future__ import annotations

import dataclasses
import html
import importlib
import sys
import threading
import time
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


def train_config(cfg: dict):
    """The :class:`~sparseopt_edu.train.TrainConfig` of a panel's config dict (TrainConfig field names; the panel
    state's UI-only keys are dropped)."""
    from ..train import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in cfg.items() if k in names})


def make_trainer(cfg: dict, callbacks: list, control=None):
    """The library's :class:`~sparseopt_edu.train.Trainer` for a panel's config dict, with the panel's callbacks
    and its run's control handle."""
    from ..train import Trainer

    return Trainer(train_config(cfg), callbacks=callbacks, control=control)


#: Modules that code on the notebook's thread looks up in ``sys.modules`` without importing them: plotly's
#: validators check for pandas that way (``get_module("pandas", should_load=False)``) at every figure update.
#: A warm-up that imports scikit-learn imports pandas (digits and the MNIST subset no longer need it, but
#: ``_stratified_split``, ``load_digits``' fallback and other data sets may); a figure update meanwhile saw it
#: half-initialised ("AttributeError: partially initialized module 'pandas' has no attribute 'Series'",
#: measured). So they are imported on the panel's own thread first (pandas: 0.4 s, once per process).
PEEKED_MODULES = ("pandas",)


def import_peeked_modules() -> None:
    for name in PEEKED_MODULES:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError:
                pass  # not installed: then nobody imports it in the background either


def warm_up(cfg: dict) -> None:
    """Do the one-time work of a process's first run of ``cfg`` now, so that a first Start click does not wait
    for it (issue 16 item 17; benchmarks/first_click.py measured it at 3-9 s on a 2-core CPU):

    - torch's first optimizer imports ``torch._dynamo`` (``Optimizer.__init__`` is wrapped to disable it): ~3 s;
    - the dataset goes into the one-dataset cache (``data.load_for_run``, the trainer's own call): digits and
      the MNIST subset take 0.01 / 0.26 s now (they once imported scikit-learn and parsed slowly: 3-6 s), a
      torchvision set or Fashion-MNIST longer;
    - on a GPU: the CUDA context and a cuBLAS handle.

    It draws no random number and builds no model, so nothing a notebook prints changes; it downloads nothing
    (a missing dataset is left to the run, which says what to do).
    """
    import torch

    from ..data.cache import load_for_run
    from ..train.build import resolve_device

    c = train_config(cfg)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    try:
        load_for_run(c.dataset, root=c.data_root, download=False, n_train=c.n_train, n_test=c.n_test, seed=c.seed,
                     data_kwargs=c.data_kwargs)
    except (FileNotFoundError, ImportError, RuntimeError, ValueError):
        pass  # the run raises it again, with its message
    device = resolve_device(c.device)
    if device.type == "cuda":
        x = torch.ones(8, 8, device=device)
        x @ x  # the context and a cuBLAS handle (returned to torch's pool for the run's thread)
        torch.cuda.synchronize(device)  # once, off the click: this wait costs the learner nothing


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
        self._thread: threading.Thread | None = None  # the latest worker
        self._server: threading.Thread | None = None  # the thread whose loop served last
        self.widget: W.Box | None = None

    # ----- display ---------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        self._displayed()
        return self.widget._repr_mimebundle_(**kwargs)

    def display(self):
        from IPython.display import display

        self._displayed()
        display(self.widget)

    def _displayed(self) -> None:
        """The panel is being shown (a learner reads it now): training panels warm up their first run."""

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
        self.controller.set_param(name, value, structural=name in self.STRUCTURAL)  # reaches a run in progress
        self._kick()

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
        """Make sure someone serves the pending requests: the loop already running, here, or a worker.

        Served here (the callback's thread), a request that would train passes to a worker thread instead: a
        callback that trained in place would block the very (sub)shell that must deliver the Stop click.
        """
        if not self.controller.claim():
            return  # a loop serves; it takes the request between steps (or before it releases the claim)
        if self.mode == "thread":
            self._start_worker()
        else:
            self._serve(may_train=not self.TRAINS)

    def _start_worker(self, first: Requests | None = None) -> None:
        """Serve on a daemon thread; the caller holds the claim, which passes to the worker (with ``first``)."""
        t = threading.Thread(target=self._serve_quietly, args=(first,), name=f"{type(self).__name__}-loop",
                             daemon=True)
        self._thread = t
        t.start()

    def _serve(self, may_train: bool = True, first: Requests | None = None) -> None:
        """Take requests and handle them until none is pending; the caller holds the claim."""
        self._server = threading.current_thread()
        try:
            req = first
            while True:
                if req is None:
                    req = self.controller.take()
                if not req.empty:
                    if not may_train and self._trains(req):
                        self._start_worker(first=req)  # the claim and this request pass to the worker
                        return
                    self._handle(req)
                req = None
                if self.controller.release():
                    return
        except BaseException:
            self.controller.abandon()
            raise

    def _trains(self, req: Requests) -> bool:
        """Whether handling ``req`` starts a run (training panels override)."""
        return False

    def _serve_quietly(self, first: Requests | None = None) -> None:
        self.error = None  # wait() reports this loop's failure only, never a finished earlier one
        try:
            self._serve(first=first)
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
            if not self.controller.release():  # a click came meanwhile: a worker serves it (the claim passes on)
                self._start_worker()

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
        """Until no loop serves this panel (a worker thread, or a callback's), at most ``timeout`` seconds; then
        re-raise the last worker's error (tests and notebooks use it after a thread-mode start)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        while True:
            t = self._thread
            alive = t is not None and t is not me and t.is_alive()
            if not alive and (not self.controller.serving or self._server is me):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if alive:
                t.join(0.05)
            else:
                time.sleep(0.005)  # a callback's loop (no thread to join), or a worker about to take over
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
        self._outcome = "idle"  # how the last run or button ended: the status keeps it across live changes
        self._shown: dict | None = None  # the structural settings of the run the figure shows (None: no run)
        self.buttons = {
            "start": W.Button(description="Start", button_style="success", icon="play"),
            "stop": W.Button(description="Stop", button_style="danger", icon="stop"),
            "reset": W.Button(description="Reset", button_style="", icon="refresh"),
        }
        for button in self.buttons.values():  # Stop must reach a run that trains in a busy cell (run())
            route_to_frontend_subshell(button)
        self._run_control = None
        # a request reaches the run in progress through the controller (Controller.attach), then the loop
        self.buttons["start"].on_click(lambda _b: (self.controller.request_start(), self._kick()))
        self.buttons["stop"].on_click(lambda _b: (self.controller.request_stop(), self._kick()))
        self.buttons["reset"].on_click(lambda _b: (self.controller.request_reset(), self._kick()))
        self._warming: threading.Thread | None = None  # the warm-up, started when the panel is displayed

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

    def _trains(self, req: Requests) -> bool:
        """A start, or a structural change that interrupted a run (it restarts with the new settings)."""
        return req.start or (self._resume and req.structural and not (req.stop or req.reset))

    def _handle(self, req: Requests) -> None:
        self._apply_params(req)
        if req.reset:
            self._clear()
            self._shown = None
        restart = self._trains(req)
        self._resume = False
        if restart:
            self._shown = self._structural_settings()
            self._resume = self._train()
            self._outcome = "stopped" if self._resume else "done"
            return
        if req.stop or req.reset:  # both: a Stop came after the Reset (request_reset clears an earlier stop)
            self._outcome = "stopped" if req.stop else "reset"
        word = self._outcome
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

    @property
    def run_control(self):
        """The RunControl of the run in progress (None between runs); set it to None when the run is over."""
        return self._run_control

    @run_control.setter
    def run_control(self, control) -> None:
        if control is None and self._run_control is not None:
            self.controller.detach(self._run_control)
        self._run_control = control

    def _displayed(self) -> None:
        """While the panel is displayed, a daemon thread does what the first run would do first (``warm_up``).
        Once per panel; started at display, not in the constructor, so the panel is not built beside it."""
        cfg = self._next_config() if self._warming is None else None
        if cfg is None:
            return
        import_peeked_modules()
        self._warming = threading.Thread(target=self._warm_up_quietly, args=(cfg,), daemon=True,
                                         name=f"{type(self).__name__}-warm-up")
        self._warming.start()

    def _warm_up_quietly(self, cfg: dict) -> None:
        try:
            warm_up(cfg)
        except Exception:  # noqa: BLE001 -- a warm-up is an optimisation: the run itself reports any failure
            pass

    def _next_config(self) -> dict | None:
        """The config dict the next run starts with: the state's ``configs()[0]`` (a race) or ``config()``."""
        if hasattr(self.state, "configs"):
            return next(iter(self.state.configs()), None)
        return self.state.config() if hasattr(self.state, "config") else None

    def _new_run_control(self, commit: str = "auto"):
        """The handle of the next run. Every request from the last ``take`` on reaches it (Controller.attach): a
        stop, reset, start or structural change stops it, a live one steers it (a race's runs share one handle,
        so every arm and seed switches at the same step). A warm-up still going is waited for (its work would
        otherwise be done twice, side by side)."""
        from ..train.control import RunControl

        warming = self._warming
        if warming is not None and warming is not threading.current_thread():
            warming.join()

        control = RunControl(commit)
        self._run_control = control
        self.controller.attach(control, lambda name, value: self._steer(control, name, value))
        return control

    def _steer(self, control, name, value) -> None:
        """A live control's new value, for the run of ``control`` (called under the controller's lock)."""
        if name == "lr":
            control.set_lr(self._trainer_lr(float(value)))

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
