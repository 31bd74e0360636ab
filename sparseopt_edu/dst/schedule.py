"""When the topology changes and by how much (RigL's update schedule), as one object a user can pass in.

Steps are counted as optimizer steps done, starting at 1 after the first ``optimizer.step()``. An update
happens at step t when t % delta_t == 0 and t < t_end (t_end exclusive). How much it drops is the schedule's
``fraction`` function, f(t, t_end) -> a fraction in [0, 1]; RigL's is the cosine decay
f(t) = alpha / 2 * (1 + cos(pi * t / t_end)) (:class:`CosineDecay`, the default; ``alpha=`` is its shortcut).
Any callable works (jaxpruner composes its schedules the same way): ``UpdateSchedule(delta_t=100, t_end=750,
fraction=ConstantFraction(0.2))``.

A checkpoint holds the cosine decay by value (``{"delta_t", "alpha", "t_end"}``, the format of earlier
checkpoints); any other function is code, not state: its ``repr`` is saved for the record, and the DST it is
loaded into must be built with that function (as a model must be built before its weights load).

The field disagrees on T_end's unit, so ours is explicit: ``t_end`` a float is a fraction of ``total_steps`` (in
[0, 1]; RigL's 0.75 is the default); ``t_end_steps`` is a step count. An int ``t_end`` of 2 or more is still
read as steps (older code passes ``t_end=10``), but ``t_end=1`` is refused: it reads as "the whole run" and
would mean one step, so RigL would never update. A schedule that ends before its first update (t_end <= delta_t)
is reported with a warning: the run would be a static sparse one in disguise.
"""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..sparse.distributions import as_number


def _count(name: str, value, lo: int, what: str):
    """An integer >= lo (a numpy or 0-d tensor int too); bools, floats and strings are refused by name."""
    number = as_number(value)
    if not isinstance(number, int) or number < lo:
        raise ValueError(f"{name} must be {what} (an int >= {lo}), got {value!r}")
    return number


def count_to_drop(fraction: float, n_active: int | torch.Tensor) -> int | torch.Tensor:
    """floor(fraction * n_active): how many live connections an update drops (and regrows) in a layer.

    The one function for both sides of an update (docs/method.md section 4): ``n_active`` a Python int (the host's
    decisions and records) or a float64 tensor of per-layer live counts (the device's ranking). Either way it is
    one IEEE-754 double product and a floor (a count below 2**53 is exact as a double), so both agree exactly.
    """
    if isinstance(n_active, torch.Tensor):
        if n_active.dtype != torch.float64:  # a float32 product would round differently from the host's
            raise TypeError(f"per-layer live counts must be float64 to match the host's count, got {n_active.dtype}")
        return torch.floor(n_active * fraction)
    return math.floor(fraction * n_active)


def _fraction(name: str, value) -> float:
    number = as_number(value)
    if number is None or not 0.0 <= number <= 1.0:  # (NaN fails the range test too)
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(number)


@dataclass(frozen=True)
class CosineDecay:
    """RigL's drop fraction: alpha / 2 * (1 + cos(pi * t / t_end)), from alpha at step 0 down to 0 at t_end."""

    alpha: float = 0.3

    def __post_init__(self):
        object.__setattr__(self, "alpha", _fraction("alpha (the initial drop fraction)", self.alpha))

    def __call__(self, t: int, t_end: int) -> float:
        return self.alpha / 2.0 * (1.0 + math.cos(math.pi * t / t_end))


@dataclass(frozen=True)
class ConstantFraction:
    """The same drop fraction at every update (no decay)."""

    fraction: float

    def __post_init__(self):
        object.__setattr__(self, "fraction", _fraction("the drop fraction", self.fraction))

    def __call__(self, t: int, t_end: int) -> float:
        return self.fraction


DropFraction = Callable[[int, int], float]  # f(t, t_end) -> the fraction of a layer's live weights to drop


@dataclass(frozen=True)
class UpdateSchedule:
    """Update every ``delta_t`` steps while t < ``t_end`` (a step count), dropping ``fraction(t, t_end)``.

    ``alpha=a`` is the shortcut for ``fraction=CosineDecay(a)`` (neither: RigL's alpha = 0.3). ``alpha`` reads
    back the cosine's alpha, None for another function. :meth:`build` resolves ``t_end`` given as a fraction of
    training, with the checks of the keyword arguments of the DST classes.
    """

    delta_t: int = 100
    alpha: float | None = None
    t_end: int = 0  # in steps, resolved
    fraction: DropFraction | None = None

    def __post_init__(self):
        object.__setattr__(self, "delta_t", _count("delta_t", self.delta_t, 1,
                                                   "a positive number of steps between updates"))
        if isinstance(as_number(self.t_end), float):
            raise ValueError(f"UpdateSchedule's t_end is a step count, got {self.t_end!r}: for a fraction of "
                             f"training use UpdateSchedule.build(t_end={self.t_end!r}, total_steps=T)")
        object.__setattr__(self, "t_end", _count("t_end", self.t_end, 0, "the step at which updates stop"))
        fraction, alpha = self.fraction, self.alpha
        if fraction is None:
            fraction = CosineDecay(0.3 if alpha is None else alpha)
        elif not callable(fraction):
            raise TypeError(f"fraction must be a function f(t, t_end) -> drop fraction, e.g. CosineDecay(0.3) or "
                            f"ConstantFraction(0.2), got {fraction!r}")
        elif alpha is not None and fraction != CosineDecay(alpha):
            raise ValueError(f"give alpha={alpha!r} (the cosine decay's shortcut) or fraction={fraction!r}, not both")
        object.__setattr__(self, "fraction", fraction)
        object.__setattr__(self, "alpha", fraction.alpha if isinstance(fraction, CosineDecay) else None)

    @classmethod
    def build(cls, delta_t: int = 100, alpha: float | None = None, t_end: float | int = 0.75,
              total_steps: int | None = None, *, t_end_steps: int | None = None,
              fraction: DropFraction | None = None):
        """The schedule of the DST keywords: ``t_end`` a fraction of ``total_steps``, or ``t_end_steps`` steps."""
        delta_t = _count("delta_t", delta_t, 1, "a positive number of steps between updates")
        if alpha is not None and fraction is not None:
            raise ValueError(f"give alpha={alpha!r} (the cosine decay's shortcut) or fraction={fraction!r}, not both")
        if fraction is None:
            fraction = CosineDecay(_fraction("alpha (the initial drop fraction)", 0.3 if alpha is None else alpha))
        if total_steps is not None:
            total_steps = _count("total_steps", total_steps, 1, "the number of optimizer steps of the run")
        if t_end_steps is not None:
            t_end = _count("t_end_steps", t_end_steps, 0, "the step at which updates stop")
            given = f"t_end_steps={t_end}"
        else:
            number = as_number(t_end)
            if number is None:
                raise ValueError(f"t_end must be a fraction of training (a float in [0, 1], e.g. 0.75) or "
                                 f"t_end_steps=N for a step count, got {t_end!r}")
            if isinstance(number, float) and not isinstance(t_end, numbers.Integral):
                if not 0.0 <= number <= 1.0:
                    raise ValueError(f"t_end as a float is a fraction of total_steps and must be in [0, 1], got "
                                     f"{t_end!r}; for a step count pass t_end_steps=N")
                if total_steps is None:
                    raise ValueError(
                        f"t_end={number} is a fraction of training: pass total_steps=... (the number of optimizer "
                        "steps), or give the step count as t_end_steps=N"
                    )
                given = f"t_end={number} x total_steps={total_steps}"
                t_end = int(number * total_steps)
            elif number == 1:
                raise ValueError("t_end=1 is ambiguous: write t_end=1.0 for updates until the end of training (a "
                                 "fraction of total_steps), or t_end_steps=1 for one step")
            elif number < 0:
                raise ValueError(f"t_end must be >= 0, got {t_end!r}: a fraction of training in [0, 1] or "
                                 "t_end_steps=N")
            else:
                t_end, given = number, f"t_end={number} steps"
            if t_end == 0 and number == 0 and isinstance(number, int):
                return cls(delta_t=delta_t, t_end=0, fraction=fraction)  # an explicit 0: no updates on purpose
        if t_end <= delta_t:
            warnings.warn(
                f"this schedule makes no topology update: updates stop at step {t_end} ({given}), not after the "
                f"first update step delta_t={delta_t}. Lower delta_t or raise t_end (a fixed mask is method "
                "'static')",
                UserWarning, stacklevel=3)
        return cls(delta_t=delta_t, t_end=t_end, fraction=fraction)

    def is_update(self, t: int) -> bool:
        return t > 0 and t % self.delta_t == 0 and t < self.t_end

    def drop_fraction(self, t: int) -> float:
        """f(t): the fraction of each layer's live connections that the update at step t drops and regrows."""
        if self.t_end <= 0:
            return 0.0
        value = self.fraction(t, self.t_end)
        number = as_number(value)
        if number is None or not 0.0 <= number <= 1.0:
            raise ValueError(f"the drop fraction {self.fraction!r} gave {value!r} at step {t}: it must return a "
                             "number in [0, 1]")
        return float(number)

    def drop_count(self, t: int, n_active: int) -> int:
        """floor(f(t) * n_active): the number of connections to drop (and regrow) in one layer."""
        return count_to_drop(self.drop_fraction(t), n_active)

    def state_dict(self) -> dict:
        """The cosine decay as ``{"delta_t", "alpha", "t_end"}`` (as earlier checkpoints); another function by
        its repr only (see the module docstring)."""
        if isinstance(self.fraction, CosineDecay):
            return {"delta_t": self.delta_t, "alpha": self.alpha, "t_end": self.t_end}
        return {"delta_t": self.delta_t, "t_end": self.t_end, "fraction": repr(self.fraction)}

    def restored(self, state: dict) -> UpdateSchedule:
        """The schedule saved as ``state``; where it saved no function by value, the one this schedule has."""
        if "alpha" in state:
            return UpdateSchedule(delta_t=state["delta_t"], alpha=state["alpha"], t_end=state["t_end"])
        if isinstance(self.fraction, CosineDecay):
            raise ValueError(
                f"this DST state was saved with the drop fraction {state.get('fraction')}, which a checkpoint "
                "cannot hold: build the DST with schedule=UpdateSchedule(..., fraction=<that function>) and load "
                "the state into it")
        return UpdateSchedule(delta_t=state["delta_t"], t_end=state["t_end"], fraction=self.fraction)
