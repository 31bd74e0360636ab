"""Interactive panels for the notebooks: each is a class with ``.widget`` (an ipywidgets box) that displays
itself, one UI-state dataclass (seed included), and one thread-safe :class:`Controller` between the widget
callbacks and the loop that trains and draws (see ``controller.py`` for the run modes).

    SkewPanel        notebook 02: Fig. 3 (gradient ratio vs sparsity) and the per-neuron gradient scatter
    DSTPanel         notebook 03: SET/RigL live: fan-in histogram, heterogeneity, ITOP, skew slope per update
    RacePanel        notebook 04: baseline vs SparseOpt, loss and accuracy bands over seeds, live
    NeuronStepPanel  notebook 04: relative step and weight norm vs neuron density over the first steps

Nothing in the library imports this package (STYLE.md: arrows point one way).
"""
from .controller import Controller, Requests, Throttle, detect_frontend, pick_mode
from .dst import DSTPanel, DSTState
from .neuron_step import NeuronStepPanel, NeuronStepState, track_neuron_steps
from .race import RacePanel, RaceState
from .skew import SkewPanel, SkewState

__all__ = ["Controller", "Requests", "Throttle", "detect_frontend", "pick_mode", "SkewPanel", "SkewState", "RacePanel", "RaceState", "NeuronStepPanel",
           "NeuronStepState", "track_neuron_steps", "DSTPanel", "DSTState"]
