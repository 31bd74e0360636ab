"""The learning rate of each step: warm-up, then a decay; ``set_lr`` changes the base it scales."""
from __future__ import annotations

import math


class LRSchedule:
    """lr(t) = base_lr x factor(t), t = optimizer steps done before this step (0-based).

    Linear warm-up over ``warmup_steps`` ((t+1)/warmup), then "constant", "cosine" (to 0 at the last step),
    "linear" (to 0) or "step" (x0.1 at 50% and again at 75% of the steps after warm-up). ``set_lr`` on the
    trainer changes ``base_lr``: the schedule's factor keeps applying on top of it.
    """

    def __init__(self, kind: str, base_lr: float, total_steps: int, warmup_steps: int = 0):
        self.kind, self.base_lr, self.total_steps, self.warmup_steps = kind, float(base_lr), total_steps, warmup_steps

    def factor(self, t: int) -> float:
        w = self.warmup_steps
        if w and t < w:
            return (t + 1) / w
        if self.kind == "constant":
            return 1.0
        p = (t - w) / max(1, self.total_steps - w)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * p))
        if self.kind == "linear":
            return max(0.0, 1.0 - p)
        return 0.1 ** ((p >= 0.5) + (p >= 0.75))  # "step"

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.factor(t)

    def state_dict(self) -> dict:
        return {"kind": self.kind, "base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict) -> None:
        self.base_lr = float(state["base_lr"])


def write_lr(optimizer, value: float) -> None:
    """Put ``value`` into every param group: in place into a device-tensor LR (what a CUDA graph reads), else as
    a float."""
    for group in optimizer.param_groups:
        if hasattr(group["lr"], "fill_"):
            group["lr"].fill_(value)
        else:
            group["lr"] = value
