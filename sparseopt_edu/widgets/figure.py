"""LiveFigure: the panels' FigureWidget, safe to edit from a worker thread while the browser talks to it.

Why: a panel in thread mode (Voila, a Start click) edits its figure on a worker thread while the kernel's main
thread applies the browser's messages to the same widget (every update a view draws is answered with a
trace/layout delta). ipywidgets applies such a message inside ``hold_trait_notifications``, which swaps the
widget's ``notify_change`` for one that merges changes per trait. plotly sends an edit as ``_py2js_update = msg``
then ``_py2js_update = None``; merged, only the None goes out, and the edit is lost without an error (seen in
notebook 02's Voila dashboard: the status showed the new sparsity, the figure kept the old one). One lock per
figure, taken by every edit (``batch_update``, ``plotly_update``/``restyle``/``relayout``) and by every message
from the browser, keeps the two apart.
"""
from __future__ import annotations

import copy
import threading
from contextlib import contextmanager

import plotly.graph_objects as go


class LiveFigure(go.FigureWidget):
    """A ``go.FigureWidget`` whose edits and incoming browser messages never interleave."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._edit_lock = threading.RLock()

    @contextmanager
    def batch_update(self):
        with self._edit_lock, super().batch_update():
            yield

    def plotly_update(self, *args, **kwargs):  # (batch_update's exit calls it too: the lock is re-entrant)
        with self._edit_lock:
            return super().plotly_update(*args, **kwargs)

    def plotly_restyle(self, *args, **kwargs):
        with self._edit_lock:
            return super().plotly_restyle(*args, **kwargs)

    def plotly_relayout(self, *args, **kwargs):
        with self._edit_lock:
            return super().plotly_relayout(*args, **kwargs)

    def set_values(self, trace_indexes: list[int], values: dict[str, list], relayout: dict | None = None) -> None:
        """Set ``values[key][k]`` as trace ``trace_indexes[k]``'s ``key`` and send it, with ``relayout``, as one
        update: what ``plotly_update`` does, minus its per-(trace, key) path checks and equality tests, which
        cost most of a live panel's redraw (issue 16 item 18). For values the caller made (float arrays), not
        for user input: nothing is validated. Python's view (``fig.data[i].y``) is the figure's ``_data``."""
        with self._edit_lock:
            for key, column in values.items():
                for index, value in zip(trace_indexes, column, strict=True):
                    self._data[index][key] = value
            layout = self._perform_plotly_relayout(relayout) if relayout else {}
            self._send_update_msg(values, layout, trace_indexes)

    def keep_state(self) -> None:
        """Make the figure as it is now the widget's synced state: what a front end that connects later draws.

        plotly syncs a FigureWidget's content only when it is built (or displayed on its own) and sends every
        later edit as a message; Voila drops the messages sent while it executes the notebook (ENV.md) and then
        asks for the widgets' states, so a run that ended during execution showed the empty build ("race: idle")
        whenever the notebook's later cells outlasted base.Panel's timed re-sends. One state message (the whole
        figure) at the end of a run; a view already drawn ignores it (plotly redraws views from messages)."""
        with self._edit_lock:
            self._widget_data = copy.deepcopy(self._data)
            self._widget_layout = copy.deepcopy(self._layout_obj._props)

    def set_state(self, sync_data):  # the browser's messages (ipywidgets calls it on the kernel's main thread)
        with self._edit_lock:
            super().set_state(sync_data)
