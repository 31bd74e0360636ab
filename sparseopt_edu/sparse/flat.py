"""Every masked layer as one flat vector, so a topology update costs a fixed handful of kernels for all layers.

Why: drop and grow decided layer by layer cost about 45 small kernels per layer, ~20 ms per update for ResNet-20
on an H100, all of it Python and launch overhead (docs/method.md section 5 asks for updates every 100 steps).
Concatenated, the per-layer top-k becomes one *segmented* ranking: sort every score once, then stably by layer,
and an entry's position inside its layer's block is its rank. Per-layer and per-neuron sums are differences of
one prefix sum (``segment_sums.py``: no atomics; ``index_add_`` into a few bins cost 57 ms per ResNet-18 update on
an H200), or one ``index_add_`` where a layer's neurons are not contiguous runs.

Each tensor is read in its weight's memory order (``channels_last`` conv weights too), so reading and writing
are views and copies of contiguous blocks, never a strided gather per layer. Rows (output neurons) of a Linear
or Conv stay whole: a neuron's entries are one run of the flat vector whatever the memory format. A transposed
convolution's neurons are its weight's dim 1 (``layers.neuron_rows``): their entries are spread over the block, and
``row_of`` says where each one belongs (the per-neuron sums do not need runs; SRigL does, and refuses such layers).
"""
from __future__ import annotations

import torch

from .segment_sums import run_bounds, run_sums


def memory_order(t: torch.Tensor) -> tuple[int, ...]:
    """The permutation of dims from outermost to innermost in memory (ties keep the logical order)."""
    return tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), d)))


class FlatLayout:
    """Where each masked layer sits in the flat vector, plus the index tensors the segmented operations use.

    ``layer_of`` (N,) the layer of each entry, ``rank_in_layer`` (N,) its offset inside its layer's block,
    ``row_of`` (N,) its neuron's global index, ``layer_of_row`` (R,) the layer of each neuron. Built once per
    device and memory format by :meth:`SparseMasks.layout`.
    """

    def __init__(self, weights: list[torch.Tensor], neurons: list | None = None):
        """``neurons``: per layer None (neurons along dim 0) or (n_neurons, ids), ids a weight-shaped int64 tensor
        giving each entry's neuron (a ConvTranspose2d's output channels are dim 1)."""
        if not weights:
            raise ValueError("a FlatLayout needs at least one layer")
        self.device = weights[0].device
        self.perms = [memory_order(w) for w in weights]
        self.inverse = [tuple(sorted(range(len(p)), key=p.__getitem__)) for p in self.perms]
        self.shapes = [tuple(w.shape) for w in weights]
        self.sizes = [w.numel() for w in weights]
        neurons = list(neurons) if neurons is not None else [None] * len(weights)
        self.rows = [w.shape[0] if nr is None else int(nr[0]) for w, nr in zip(weights, neurons)]
        self.numel = sum(self.sizes)
        self.n_layers = len(weights)
        dev, i64 = self.device, torch.int64
        sizes = torch.tensor(self.sizes, device=dev)
        self.layer_of = torch.repeat_interleave(torch.arange(self.n_layers, device=dev), sizes)
        starts = torch.cumsum(sizes, 0) - sizes
        self.rank_in_layer = torch.arange(self.numel, device=dev) - starts[self.layer_of]
        row_ids, row_start = [], 0
        for w, perm, nr, n_rows in zip(weights, self.perms, neurons, self.rows):
            if nr is None:
                ids = torch.arange(row_start, row_start + w.shape[0], device=dev, dtype=i64)
                ids = ids.view(-1, *([1] * (w.dim() - 1))).expand(w.shape)
            else:
                ids = nr[1].to(device=dev, dtype=i64) + row_start
            row_ids.append(ids.permute(perm).reshape(-1))
            row_start += n_rows
        self.row_of = torch.cat(row_ids)
        self.n_rows = row_start
        self.layer_of_row = torch.repeat_interleave(torch.arange(self.n_layers, device=dev),
                                                    torch.tensor(self.rows, device=dev))
        self.fan_ins = [s // r for s, r in zip(self.sizes, self.rows)]  # per layer (host ints)
        self.fan_in = torch.tensor(self.fan_ins, device=dev, dtype=torch.float64)[self.layer_of_row]
        self.rows_per_layer = torch.tensor(self.rows, dtype=torch.float64, device=dev)  # made once: a host-to-
        # device copy waits for the GPU, so the per-update code never makes one
        # run bounds for the prefix-sum reductions, from host sizes (no device read): layers are runs of entries,
        # neurons are runs of entries unless a layer keeps its neurons along another dim, and of rows
        self._layer_runs = run_bounds(sizes)
        self._row_layer_runs = run_bounds(torch.tensor(self.rows, device=dev))
        self._row_runs = None
        if all(nr is None for nr in neurons):
            row_sizes = torch.repeat_interleave(torch.tensor(self.fan_ins), torch.tensor(self.rows))
            self._row_runs = run_bounds(row_sizes.to(dev))

    def matches(self, weights: list[torch.Tensor]) -> bool:
        return (len(weights) == self.n_layers and weights[0].device == self.device
                and all(tuple(w.shape) == s and memory_order(w) == p
                        for w, s, p in zip(weights, self.shapes, self.perms)))

    # ----- moving between per-layer tensors and the flat vector --------------------------------------------
    def gather(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """One flat vector of the layers' tensors (each in its weight's memory order): one copy kernel."""
        return torch.cat([t.permute(p).reshape(-1) for t, p in zip(tensors, self.perms)])

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer views of ``flat`` in the layers' logical shapes (and their weights' strides)."""
        return [chunk.view([s[d] for d in p]).permute(inv)
                for chunk, s, p, inv in zip(flat.split(self.sizes), self.shapes, self.perms, self.inverse)]

    def split_as(self, flat: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """``split`` with each view in the dtype of the matching tensor (one conversion when they share one)."""
        dtypes = {t.dtype for t in tensors}
        if len(dtypes) == 1:
            return self.split(flat.to(dtypes.pop()))
        return [c.to(t.dtype) for c, t in zip(self.split(flat), tensors)]

    def scatter_(self, tensors: list[torch.Tensor], flat: torch.Tensor) -> None:
        """Write ``flat`` back into the layers' tensors, in place (their addresses stay: CUDA graphs hold them)."""
        torch._foreach_copy_(tensors, self.split_as(flat, tensors))

    # ----- segmented reductions and ranking ----------------------------------------------------------------
    def layer_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Per-layer sums (float64: exact for counts)."""
        return run_sums(values, self._layer_runs)

    def row_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Per-neuron sums (float64)."""
        if self._row_runs is not None:
            return run_sums(values, self._row_runs)
        return torch.zeros(self.n_rows, dtype=torch.float64, device=self.device).index_add_(
            0, self.row_of, values.to(torch.float64))

    def rows_to_layers(self, values: torch.Tensor) -> torch.Tensor:
        """Per-layer sums of a per-neuron vector."""
        return run_sums(values, self._row_layer_runs)

    def top_per_layer(self, score: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Boolean flat mask of the ``count[l]`` highest scores of every layer l (``count`` on the device).

        Sorting by score and then stably by layer puts layer l's entries, best first, exactly in layer l's block,
        so the rank of an entry is its offset in that block. Scores must be distinct where it matters
        (callers add tie-break noise); -inf entries are ranked last.
        """
        order = torch.argsort(score, descending=True, stable=True)
        order = order[torch.argsort(self.layer_of[order], stable=True)]
        take = self.rank_in_layer < count.to(self.rank_in_layer.dtype)[self.layer_of]
        return torch.empty(self.numel, dtype=torch.bool, device=self.device).scatter_(0, order, take)

    def density_ratio(self, live_rows: torch.Tensor) -> torch.Tensor:
        """Per neuron d_i / d_mean, d_mean over the layer's active neurons: SparseOpt's factor is its square root.

        Computed as live_i * n_active / sum(live) from integer counts, so it is exact: under constant fan-in it is
        exactly 1.0, and SparseOpt is then exactly the inner optimizer. (The one home of this formula: the cached
        scales, ``SparseMasks.neuron_scale`` and the engine's skew metrics all come from here.)
        """
        dtype = torch.float64 if self.device.type in ("cpu", "cuda") else torch.float32
        live = live_rows.to(dtype)
        active = self.rows_to_layers(live_rows > 0).to(dtype)
        total = self.rows_to_layers(live_rows).clamp_min(1).to(dtype)
        return live * active[self.layer_of_row] / total[self.layer_of_row]

    def neuron_scale(self, mask: torch.Tensor) -> torch.Tensor:
        """SparseOpt's sqrt(d_i / d_mean) of each entry's neuron under the flat ``mask`` (float64, per entry)."""
        return self.density_ratio(self.row_sum(mask)).sqrt_()[self.row_of]

    def fan_in_cv(self, live_rows: torch.Tensor) -> torch.Tensor:
        """Mean over layers of the coefficient of variation (std / mean) of per-neuron live counts (a 0-d tensor)."""
        n = self.rows_per_layer
        mean = self.rows_to_layers(live_rows) / n
        dev = live_rows.to(torch.float64) - mean[self.layer_of_row]
        std = (self.rows_to_layers(dev * dev) / (n - 1).clamp_min(1)).sqrt()
        return (std / mean.clamp_min(1e-12)).mean()
