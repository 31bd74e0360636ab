"""The one handle through which anything outside the training loop steers a run: stop it, change its LR.

Why a handle of its own: a widget callback, a Ctrl-C handler or a test runs on another thread than the loop.
They call this object directly (every method is thread-safe); the loop reads it between steps. Events go the
other way and carry data only.

Requests take effect at the loop's next step. Several runs can share one handle (a race's arms and seeds):
``commit="manual"`` then holds a new LR back until the driver calls :meth:`commit` between rounds, so every run
that shares the handle switches at the same step.
"""
from __future__ import annotations

import math
import threading


class RunControl:
    """``control.stop()``, ``control.set_lr(0.05)``; the loop reads ``stop_requested`` and ``lr``."""

    def __init__(self, commit: str = "auto"):
        if commit not in ("auto", "manual"):
            raise ValueError(f"commit must be 'auto' (the loop applies requests itself) or 'manual' (a driver "
                             f"calls commit() between rounds), got {commit!r}")
        self.commit_mode = commit
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending_lr: float | None = None
        self._lr: float | None = None  # the base LR in force; None: the config's

    # ----- writers (any thread) ---------------------------------------------------------------------------
    def stop(self) -> None:
        """End the run after its current step ("end" event, reason "stopped")."""
        self._stop.set()

    def set_lr(self, lr: float) -> None:
        """Set the base LR from the next step on (the LR schedule's factor still applies on top of it)."""
        if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        with self._lock:
            self._pending_lr = float(lr)

    def commit(self) -> None:
        """Let pending requests take effect (``commit="manual"``: the driver calls this between rounds)."""
        with self._lock:
            if self._pending_lr is not None:
                self._lr, self._pending_lr = self._pending_lr, None

    # ----- readers (the loop) -----------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def base_lr(self) -> float | None:
        """The base LR the next step uses (None: no request yet); ``commit="auto"`` commits first."""
        if self.commit_mode == "auto":
            self.commit()
        with self._lock:
            return self._lr

    def clear_stop(self) -> None:
        """Forget a stop that ended a run, so ``run()`` can continue it later."""
        self._stop.clear()
