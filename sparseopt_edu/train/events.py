"""What the training loop tells its subscribers, and the record of a run (livelossplot-style).

The trainer emits :class:`Event` objects; a live plot is one subscriber, :class:`Recorder` (headless, for tests
and the CLI) is another, and :class:`History` is the record the trainer itself keeps and writes to disk.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass

from .json_source import json_text

EVENT_KINDS = ("start", "step", "topology", "epoch", "end")
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "time_s", "images_per_s")
#: fields that depend on the wall clock (left out when runs are compared for exact equality)
WALL_CLOCK_KEYS = ("time_s", "images_per_s", "wall_s")


@dataclass
class Event:
    """What happened (``kind``: one of EVENT_KINDS), when (``step``, ``epoch``), the numbers (``data``), and which
    run (``run``: its folder, or None). Data only: to steer a run, call its ``RunControl``."""

    kind: str
    step: int
    epoch: int
    data: dict
    run: str | None = None


def _clean(v):
    """JSON-safe: NaN/inf become None, tensors and numpy scalars become Python numbers."""
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


class History:
    """Per epoch lists (``epoch``, ``train_loss``, ...), ``step_log`` and ``topology`` dict lists, and meta."""

    def __init__(self):
        for key in EPOCH_KEYS:
            setattr(self, key, [])
        self.step_log: list[dict] = []
        self.topology: list[dict] = []
        self.reason: str | None = None
        self.config: dict = {}
        self.meta: dict = {}

    # ----- recording --------------------------------------------------------------------------------------
    def add_epoch(self, row: dict) -> None:
        for key in EPOCH_KEYS:
            getattr(self, key).append(row.get(key))

    def epochs(self) -> list[dict]:
        """The per-epoch lists as one dict per epoch."""
        return [{k: getattr(self, k)[i] for k in EPOCH_KEYS} for i in range(len(self.epoch))]

    def final(self, key: str):
        values = [v for v in getattr(self, key) if v is not None]
        return values[-1] if values else None

    # ----- persistence ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {k: list(getattr(self, k)) for k in EPOCH_KEYS}
        d.update(step_log=list(self.step_log), topology=list(self.topology), reason=self.reason,
                 config=dict(self.config), meta=dict(self.meta))
        return _clean(d)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        h = cls()
        for k in EPOCH_KEYS:
            setattr(h, k, list(d.get(k, [])))
        h.step_log = list(d.get("step_log", []))
        h.topology = list(d.get("topology", []))
        h.reason = d.get("reason")
        h.config = dict(d.get("config", {}))
        h.meta = dict(d.get("meta", {}))
        return h

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from .runs import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_json(cls, path_or_text: str) -> History:
        """From JSON text, or from the path of a history.json (``json_source.json_text`` tells which)."""
        return cls.from_dict(json.loads(json_text(path_or_text)))

    def to_csv(self, path=None) -> str:
        """The per-epoch table as CSV (one row per epoch)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(EPOCH_KEYS), lineterminator="\n")
        writer.writeheader()
        for row in self.epochs():
            writer.writerow({k: ("" if v is None else v) for k, v in _clean(row).items()})
        text = buf.getvalue()
        if path is not None:
            from .runs import atomic_write_text

            atomic_write_text(path, text)
        return text

    def without_wall_clock(self) -> dict:
        """``to_dict()`` minus wall-clock fields, meta and the run folder: equal for runs that computed the same."""
        d = self.to_dict()
        for k in WALL_CLOCK_KEYS:
            d.pop(k, None)
        d["step_log"] = [{k: v for k, v in r.items() if k not in WALL_CLOCK_KEYS} for r in d["step_log"]]
        d["topology"] = [{k: v for k, v in r.items() if k not in WALL_CLOCK_KEYS} for r in d["topology"]]
        d.pop("meta", None)
        for k in ("run_dir", "resume", "progress"):  # where and how it ran, not what it computed
            d["config"].pop(k, None)
        return d

    def __repr__(self) -> str:
        return (f"History(epochs={len(self.epoch)}, steps logged={len(self.step_log)}, "
                f"topology updates={len(self.topology)}, reason={self.reason!r})")


class Recorder:
    """A headless subscriber: ``Trainer(cfg, callbacks=[rec])`` collects every event in ``rec.events``."""

    def __init__(self, echo: bool = False):
        self.events: list[Event] = []
        self.echo = echo

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if self.echo:
            print(f"[{event.kind}] step {event.step} epoch {event.epoch}: "
                  + ", ".join(f"{k}={v}" for k, v in event.data.items() if k not in ("history", "config")))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]
