"""The training engine: config, the one step, events, control, the loop, checkpoints and run folders
(docs/TRAINER_API.md, docs/ARCHITECTURE.md).

Never imports plotly or ipywidgets: live plots are subscribers written elsewhere.
"""
from .config import TrainConfig
from .control import RunControl
from .engine import Trainer, train
from .events import Event, History, Recorder
from .lr_schedule import LRSchedule

__all__ = ["Event", "History", "LRSchedule", "Recorder", "RunControl", "TrainConfig", "Trainer", "train"]
