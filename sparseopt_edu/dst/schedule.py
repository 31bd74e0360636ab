"""When the topology changes and by how much (RigL's update schedule).

Steps are counted as optimizer steps done, starting at 1 after the first ``optimizer.step()``. An update
happens at step t when t % delta_t == 0 and t < t_end (t_end exclusive). The drop fraction decays with a
cosine: f(t) = alpha / 2 * (1 + cos(pi * t / t_end)).

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
from dataclasses import dataclass

from ..sparse.distributions import as_number


def _count(name: str, value, lo: int, what: str):
    """An integer >= lo (a numpy or 0-d tensor int too); bools, floats and strings are refused by name."""
    number = as_number(value)
    if not isinstance(number, int) or number < lo:
        raise ValueError(f"{name} must be {what} (an int >= {lo}), got {value!r}")
    return number


@dataclass(frozen=True)
class UpdateSchedule:
    delta_t: int = 100
    alpha: float = 0.3
    t_end: int = 0  # in steps, resolved

    @classmethod
    def build(cls, delta_t: int = 100, alpha: float = 0.3, t_end: float | int = 0.75, total_steps: int | None = None,
              *, t_end_steps: int | None = None):
        delta_t = _count("delta_t", delta_t, 1, "a positive number of steps between updates")
        number = as_number(alpha)
        if number is None or not 0.0 <= number <= 1.0:  # (NaN fails the range test too)
            raise ValueError(f"alpha (the initial drop fraction) must be a number in [0, 1], got {alpha!r}")
        alpha = float(number)
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
                return cls(delta_t=delta_t, alpha=alpha, t_end=0)  # an explicit 0: no updates on purpose (Static)
        if t_end <= delta_t:
            warnings.warn(
                f"this schedule makes no topology update: updates stop at step {t_end} ({given}), not after the "
                f"first update step delta_t={delta_t}. Lower delta_t or raise t_end (a fixed mask is method "
                "'static')",
                UserWarning, stacklevel=3)
        return cls(delta_t=delta_t, alpha=alpha, t_end=t_end)

    def is_update(self, t: int) -> bool:
        return t > 0 and t % self.delta_t == 0 and t < self.t_end

    def drop_fraction(self, t: int) -> float:
        if self.t_end <= 0:
            return 0.0
        return self.alpha / 2.0 * (1.0 + math.cos(math.pi * t / self.t_end))

    def drop_count(self, t: int, n_active: int) -> int:
        """floor(f(t) * n_active): the number of connections to drop (and regrow) in one layer."""
        return math.floor(self.drop_fraction(t) * n_active)
