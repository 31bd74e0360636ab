"""LiveFigure: the panels' FigureWidget, safe to edit from a worker thread while the browser talks to it.

Why: a panel in thread mode (Voila, a Start click) edits its figure on a worker thread while the kernel's main
thread applies the browser's messages to the same widget (every update a view draws is answered with a
trace/layout delta). ipywidgets applies such a message inside ``hold_trait_notifications``, which swaps the
widget's ``notify_change`` for one that merges changes per trait. plotly sends an edit as ``_py2js_update = msg``
then ``_py2js_update = None``; merged, only the None goes out, and the edit is lost without an error (seen in
notebook 02's Voila dashboard: the status showed the new sparsity, the figure kept the old one). One lock per
figure, taken by every ``batch_update`` and by every message from the browser, keeps the two apart.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import plotly.graph_objects as go


class LiveFigure(go.FigureWidget):
    """A ``go.FigureWidget`` whose ``batch_update`` and incoming browser messages never interleave."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._edit_lock = threading.RLock()

    @contextmanager
    def batch_update(self):
        with self._edit_lock, super().batch_update():
            yield

    def set_state(self, sync_data):  # the browser's messages (ipywidgets calls it on the kernel's main thread)
        with self._edit_lock:
            super().set_state(sync_data)
