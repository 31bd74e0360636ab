"""Seed bands: the mean and the min..max range over seeds, point by point, of curves that may differ in length.

One rule for every figure that draws a band (``viz.convergence_curves``, the CLI's HTML report, the race panel):
point i is taken over the runs that have a finite value at index i. A run that is shorter (still running,
stopped, diverged) or has no value at i (None: an epoch without an evaluation, or a NaN that history.json
stores as None) leaves that point only; the band is as long as the longest run, and a point that no run has is
None (a gap in a plotly line). ``n`` says how many runs each point is over, so a caption can say where the band
thins out. Why not only the range all runs share: a live race would then draw no further than its slowest run,
and one seed that stopped early would hide the others.
Runs are aligned by index: runs of one setting log at the same steps and epochs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Band(NamedTuple):
    mean: list  # float, or None where no run has a finite value
    lo: list
    hi: list
    n: list  # int: how many runs the point is over


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def band_over_seeds(series: Sequence[Sequence[float | None]]) -> Band:
    """Mean, min, max and count per index over the runs with a finite value there (the module's rule)."""
    length = max((len(s) for s in series), default=0)
    band = Band([], [], [], [])
    for i in range(length):
        vals = [float(s[i]) for s in series if i < len(s) and _finite(s[i])]
        band.n.append(len(vals))
        band.mean.append(sum(vals) / len(vals) if vals else None)
        band.lo.append(min(vals) if vals else None)
        band.hi.append(max(vals) if vals else None)
    return band
