"""The training engine: config, events, the loop, checkpoints and run folders (docs/TRAINER_API.md).

Never imports plotly or ipywidgets: live plots are subscribers written elsewhere.
"""
from .config import TrainConfig
from .engine import LRSchedule, Trainer, train
from .events import Event, History, Recorder

__all__ = ["Event", "History", "LRSchedule", "Recorder", "TrainConfig", "Trainer", "train"]
