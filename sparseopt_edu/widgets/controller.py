"""The one channel between widget callbacks and the loop that trains and draws.

Why (ENV.md, "Live widgets during training"): in JupyterLab >= 4.4 with ipykernel >= 7, widget messages arrive
on a kernel *subshell* (the project ships ``commsOverSubshells=perCommTarget``), so a button callback runs on
another thread while a training cell is still running. That makes a Stop button possible, and makes shared
state dangerous. The rule: callbacks only write requests here (under one lock); the loop takes them between
steps and is the only code that touches the model, the optimizer and the figures.

Run modes (``pick_mode``):
    "blocking"  ``panel.run()`` trains in the calling cell; Stop/Start/sliders reach it through the subshell.
                This is what nbval executes, and the default in JupyterLab.
    "thread"    ``panel.run()`` starts a daemon worker thread and returns at once. For front ends that do not
                deliver widget messages while a cell runs (Voila, VS Code, Colab, classic Notebook).
A Start click while no loop is serving always trains in a worker thread (a callback that serves in place hands
the start over): a callback that trained in place would block the very subshell that must deliver the Stop click.

Measured in our hermetic JupyterLab 4.6.6 + ipykernel 7.4.0 (tests/browser/test_interactions.py,
``test_comm_reaches_busy_kernel``): the front end does create a subshell for the widget comms and sends every
click on it, but ipykernel 7.4 re-routes a comm's incoming messages to the shell that last published on that comm
(the main shell, for a widget made in a cell), so a plain widget's click made while a cell is busy runs on the
main thread only after the cell ends. The training panels undo that re-route for their own controls
(``base.route_to_frontend_subshell``): their clicks run on the subshell thread while ``run()`` trains in the
cell, so Stop ends a blocking run, Run All's included, within a step.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field

MODES = ("auto", "blocking", "thread")


def detect_frontend() -> str:
    """Best guess of the front end this kernel serves: "voila", "vscode", "colab" or "jupyterlab".

    Voila runs its kernels in a separate process (``"voila" in sys.modules`` is False inside the kernel) but
    starts them with VOILA_* variables in the environment (voila/handler.py, voila_kernel_manager.py); VS Code
    sets VSCODE_PID / VSCODE_CWD; Colab imports ``google.colab``.
    """
    env = os.environ
    if "voila" in sys.modules or any(k in env for k in ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "VOILA_SERVER_URL",
                                                        "VOILA_APP_PORT", "VOILA_PREHEAT")):
        return "voila"
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in env:
        return "colab"
    if "VSCODE_PID" in env or "VSCODE_CWD" in env:
        return "vscode"
    return "jupyterlab"


def pick_mode(mode: str = "auto") -> str:
    """Resolve ``mode``: "auto" is "thread" under Voila/VS Code/Colab (no subshells), else "blocking"."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    return "blocking" if detect_frontend() == "jupyterlab" else "thread"


@dataclass
class Requests:
    """What callbacks asked for since the loop last looked (``Controller.take`` returns one)."""

    start: bool = False
    stop: bool = False
    reset: bool = False
    params: dict = field(default_factory=dict)  # every changed value, last write wins
    structural: bool = False  # at least one of ``params`` rebuilds the run

    @property
    def empty(self) -> bool:
        return not (self.start or self.stop or self.reset or self.params)


class Controller:
    """Thread-safe request box: callbacks write, the loop reads between steps.

    ``log`` keeps every request in order (kind, name, value) so tests can assert what a click produced.
    ``serving`` says whether a loop currently owns
    the model and the figures; ``claim()`` and ``release()`` change it atomically with the pending requests, so a
    click can never fall between "loop checked for requests" and "loop exited".

    The run in progress (``attach``) hears every request under the same lock that records it: a stop, reset,
    start or structural change stops it, a live change steers it. So a click cannot fall between "the run's
    handle exists" and "the callback told the handle", and a Start never stops the run it asked for.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._req = Requests()
        self._run = None  # (RunControl, steer(name, value)) of the run in progress
        self.serving = False
        self.log: list[tuple] = []

    # ----- writers (widget callbacks, any thread) -------------------------------------------------------
    def request_start(self) -> None:
        with self._lock:
            self._req.start = True
            self._req.stop = False
            self.log.append(("start",))
            self._interrupt()  # a new start ends the run in progress; the loop then starts the new one

    def request_stop(self) -> None:
        with self._lock:
            self._req.stop = True
            self._req.start = False
            self.log.append(("stop",))
            self._interrupt()

    def request_reset(self) -> None:
        with self._lock:
            self._req.reset = True
            self._req.start = False
            self._req.stop = False  # the later click names the end: "reset" (a Stop after it: "stopped")
            self.log.append(("reset",))
            self._interrupt()

    def set_param(self, name: str, value, structural: bool) -> None:
        with self._lock:
            self._req.params[name] = value
            self._req.structural |= bool(structural)
            self.log.append(("set", name, value))
            if structural:
                self._interrupt()
            elif self._run is not None:
                self._run[1](name, value)

    def _interrupt(self) -> None:
        if self._run is not None:
            self._run[0].stop()

    # ----- the run in progress (the loop) ---------------------------------------------------------------
    def attach(self, control, steer) -> None:
        """From now on requests reach ``control`` (a RunControl) directly: ``stop()`` on a stop, reset, start or
        structural change, ``steer(name, value)`` on a live change. Requests that came after the loop's last
        ``take`` (while the run was being set up) reach it now."""
        with self._lock:
            self._run = (control, steer)
            r = self._req
            if r.stop or r.reset or r.start or r.structural:
                control.stop()
            for name, value in r.params.items():
                steer(name, value)

    def detach(self, control) -> None:
        """The run of ``control`` is over: requests stay pending for the loop only."""
        with self._lock:
            if self._run is not None and self._run[0] is control:
                self._run = None

    # ----- readers (the loop) ---------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        """True when the running run must end now: stop, reset, a new start, or a structural change."""
        with self._lock:
            r = self._req
            return r.stop or r.reset or r.start or r.structural

    def peek_live(self, names) -> dict:
        """Take only the live (rate-like) params among ``names``, leaving everything else pending."""
        with self._lock:
            out = {n: self._req.params.pop(n) for n in list(self._req.params) if n in names}
            return out

    def take(self) -> Requests:
        with self._lock:
            req, self._req = self._req, Requests()
            return req

    def claim(self) -> bool:
        """Become the serving loop; False if another loop already serves."""
        with self._lock:
            if self.serving:
                return False
            self.serving = True
            return True

    def release(self) -> bool:
        """Stop serving unless requests are pending (then keep serving and return False)."""
        with self._lock:
            if not self._req.empty:
                return False
            self.serving = False
            return True

    def abandon(self) -> None:
        """Stop serving after a failure, pending requests or not (the next click serves them)."""
        with self._lock:
            self.serving = False


class Throttle:
    """At most ``per_s`` figure flushes a second (ENV.md: batch and throttle FigureWidget updates)."""

    def __init__(self, per_s: float = 5.0) -> None:
        self.interval = 1.0 / per_s
        self._last = -1e9
        self.flushes = 0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.flushes += 1
            return True
        return False

    def force(self) -> None:
        self._last = time.monotonic()
        self.flushes += 1
