"""When the topology changes and by how much (RigL's update schedule).

Steps are counted as optimizer steps done, starting at 1 after the first ``optimizer.step()``. An update
happens at step t when t % delta_t == 0 and t < t_end (t_end exclusive). The drop fraction decays with a
cosine: f(t) = alpha / 2 * (1 + cos(pi * t / t_end)). The field disagrees on T_end units: we accept steps (an
int) or a fraction of ``total_steps`` (a float in (0, 1]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class UpdateSchedule:
    delta_t: int = 100
    alpha: float = 0.3
    t_end: int = 0  # in steps, resolved

    @classmethod
    def build(cls, delta_t: int = 100, alpha: float = 0.3, t_end: float | int = 0.75, total_steps: int | None = None):
        if not isinstance(delta_t, int) or delta_t < 1:
            raise ValueError(f"delta_t must be a positive number of steps, got {delta_t!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (the initial drop fraction) must be in [0, 1], got {alpha}")
        if isinstance(t_end, float):
            if not 0.0 <= t_end <= 1.0:
                raise ValueError(f"t_end as a float is a fraction of total_steps and must be in [0, 1], got {t_end}")
            if total_steps is None:
                raise ValueError(
                    f"t_end={t_end} is a fraction of training: pass total_steps=... (the number of optimizer "
                    "steps), or give t_end in steps as an int"
                )
            t_end = int(t_end * total_steps)
        elif not isinstance(t_end, int) or t_end < 0:
            raise ValueError(f"t_end must be a step count (int >= 0) or a fraction (float), got {t_end!r}")
        return cls(delta_t=delta_t, alpha=float(alpha), t_end=t_end)

    def is_update(self, t: int) -> bool:
        return t > 0 and t % self.delta_t == 0 and t < self.t_end

    def drop_fraction(self, t: int) -> float:
        if self.t_end <= 0:
            return 0.0
        return self.alpha / 2.0 * (1.0 + math.cos(math.pi * t / self.t_end))

    def drop_count(self, t: int, n_active: int) -> int:
        """floor(f(t) * n_active): the number of connections to drop (and regrow) in one layer."""
        return math.floor(self.drop_fraction(t) * n_active)
