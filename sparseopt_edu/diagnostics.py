"""Gradient-skew diagnostics: the measurements the notebooks plot and the tests assert.

(a) ``gradient_ratio``: the paper's Fig. 3, mean |gradient| per live weight of a sparse layer over the same
    for the dense layer, with and without normalisation; theory 1/sqrt(1 - s) with BN, about 1 without.
(b) ``neuron_gradients``: per-neuron mean |grad| per live weight against neuron density, and the fitted slope
    of log|grad| on log density (theory -0.5 with BN; SparseOpt adds exactly +0.5).
(c) ``rotation_angles``: the angle between the raw and the corrected gradient of each layer.
(d) ``mask_report``: ITOP rate, fan-in histograms, active neurons, max |inactive weight| and state (must be 0).
(e) ``NeuronStepTracker``: per-neuron relative step |dw_i|/|w_i| and weight norm |w_i| against density over
    training (docs/method.md section 4b: BN's scale invariance re-equalises the relative step within a few steps).
Functions that read ``.grad`` must be called after backward and before the optimizer step (which masks it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .models import NORMS, mlp  # noqa: F401 (NORMS: diagnostics.NORMS, the norms the skew panel offers)
from .sparse import SparseMasks, sparsify


def fit_loglog_slope(x: torch.Tensor, y: torch.Tensor) -> float:
    """Least-squares slope of log y on log x over entries where both are positive."""
    x, y = x.detach().double().flatten().cpu(), y.detach().double().flatten().cpu()
    ok = (x > 0) & (y > 0) & torch.isfinite(x) & torch.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    lx, ly = x[ok].log(), y[ok].log()
    lx = lx - lx.mean()
    denom = (lx * lx).sum()
    return float((lx * (ly - ly.mean())).sum() / denom) if denom > 0 else float("nan")


def theory_ratio(sparsity: float) -> float:
    """BN's amplification of a layer at uniform sparsity s: 1/sqrt(1 - s)."""
    return 1.0 / math.sqrt(1.0 - sparsity)


def probe_mlp(in_features: int, hidden: int, classes: int, norm: str) -> nn.Sequential:
    """``models.mlp`` as an ``nn.Sequential`` (layer names '0' and '3'), for code that indexes layers by position.

    The same modules and initial weights as ``mlp(in_features, hidden, classes, norm=norm)`` (fc1, norm1, ReLU,
    head); kept for notebook 06, which indexes the layers. New code: ``models.mlp`` and its names fc1 and head.
    """
    net = mlp(in_features, hidden, classes, norm=norm)
    return nn.Sequential(net.fc1, net.norm1, nn.ReLU(), net.head)


def default_probe_data(n: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Real data that works offline everywhere: scikit-learn's 8x8 digits, standardised."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data[:n], dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return x, torch.tensor(digits.target[:n], dtype=torch.long)


def _grad_at_init(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def gradient_ratio(
    sparsity: float,
    norm: str = "bn",
    *,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    hidden: int = 256,
    seeds: int | range = 5,
    device: str | torch.device = "cpu",
) -> dict:
    """The paper's Fig. 3 at one sparsity: sparse-layer over dense-layer mean |gradient| per live weight.

    For each seed the same initial network is built twice; in one copy the first layer is masked at
    ``sparsity`` (uniform random mask, the rest dense), and both take the gradient of the same batch. The
    returned ``ratio`` is the mean over seeds (single seeds scatter by about +-10% on digits).
    """
    x, y = data if data is not None else default_probe_data()
    x, y = x.to(device).flatten(1), y.to(device)
    seed_list = range(seeds) if isinstance(seeds, int) else seeds
    ratios = []
    for seed in seed_list:
        torch.manual_seed(seed)
        dense = mlp(x.shape[1], hidden, int(y.max()) + 1, norm=norm).to(device)
        sparse = mlp(x.shape[1], hidden, int(y.max()) + 1, norm=norm).to(device)
        sparse.load_state_dict(dense.state_dict())
        if sparsity > 0:
            masks = sparsify(sparse, sparsity, "uniform", dense=["head"], seed=seed)
            live = masks["fc1"]
        else:
            live = torch.ones_like(sparse.fc1.weight, dtype=torch.bool)
        _grad_at_init(dense, x, y)
        _grad_at_init(sparse, x, y)
        g_sparse = sparse.fc1.weight.grad.abs()[live].mean()
        g_dense = dense.fc1.weight.grad.abs().mean()
        ratios.append(float(g_sparse / g_dense))
    ratios_t = torch.tensor(ratios)
    return {
        "sparsity": float(sparsity), "norm": norm, "ratio": float(ratios_t.mean()),
        "std": float(ratios_t.std()) if len(ratios) > 1 else 0.0, "seeds": len(ratios),
        "theory": theory_ratio(sparsity) if norm != "none" else 1.0, "per_seed": ratios,
    }


@torch.no_grad()
def neuron_gradients(masks: SparseMasks, name: str) -> dict:
    """Per-neuron mean |grad| per live weight vs density, raw and SparseOpt-corrected, with log-log slopes."""
    module = masks.modules[name]
    if module.weight.grad is None:
        raise ValueError(f"layer {name!r} has no .grad: call this after backward() and before optimizer.step()")
    mask = masks.neuron_rows(name, masks[name])  # one row per output neuron (a transposed conv's are dim 1)
    live = mask.sum(1)
    density = live.float() / mask.shape[1]
    g = (masks.neuron_rows(name, module.weight.grad.abs()) * mask).sum(1) / live.clamp_min(1)
    corrected = g * masks.neuron_scale(name).float()
    active = live > 0
    slope_raw, slope_corrected = skew_table(masks)[list(masks.modules).index(name), :2].tolist()
    return {
        "density": density[active].cpu(), "raw": g[active].float().cpu(), "corrected": corrected[active].cpu(),
        "slope_raw": slope_raw, "slope_corrected": slope_corrected,
    }


def rotation_angles(masks: SparseMasks) -> dict[str, float]:
    """Angle in degrees between each layer's masked raw gradient and its SparseOpt-corrected version (layers
    with a gradient; from :func:`skew_table`)."""
    angles = skew_table(masks)[:, 3].tolist()
    return {name: a for name, a in zip(masks.modules, angles) if math.isfinite(a)}


def per_neuron_density_mask(shape, densities: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A mask whose neuron i keeps round(densities[i] * fan_in) random weights (at least one)."""
    n_out, fan = shape[0], math.prod(shape[1:])
    keep = (densities * fan).round().clamp(1, fan).long()
    order = torch.rand(n_out, fan, generator=generator).argsort(dim=1)
    take = torch.arange(fan).expand(n_out, fan) < keep[:, None]
    return torch.zeros(n_out, fan, dtype=torch.bool).scatter_(1, order, take).view(shape)


def density_spread_gradients(
    *, fan_in: int = 256, neurons: int = 256, density_range=(0.05, 1.0), norm: str = "bn", seed: int = 0,
    batch: int = 512, data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    """``neuron_gradients`` at init for one layer whose neurons' densities are log-uniform over ``density_range``.

    The MLP of Fig. 3 (``models.mlp``: fc1 -> norm -> ReLU -> head; the layer is fc1); inputs are zero-mean independent Gaussians
    (the derivation's assumption) unless ``data`` is given.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if data is None:
        x = torch.randn(batch, fan_in, generator=gen)
        y = torch.randint(0, 10, (batch,), generator=gen)
    else:
        x, y = data
        x = x.flatten(1)
    model = mlp(x.shape[1], neurons, int(y.max()) + 1, norm=norm)
    masks = sparsify(model, 0.0, "uniform", dense=["head"])
    lo, hi = math.log(density_range[0]), math.log(density_range[1])
    dens = torch.exp(lo + (hi - lo) * torch.rand(neurons, generator=gen))
    masks.set_mask("fc1", per_neuron_density_mask(tuple(model.fc1.weight.shape), dens, gen))
    _grad_at_init(model, x, y)
    return neuron_gradients(masks, "fc1")


def skew_slope(
    *, fan_in: int = 256, neurons: int = 256, density_range=(0.05, 1.0), norm: str = "bn",
    seeds: int = 5, batch: int = 512, data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    """Slope of log|grad| on log density for a layer whose neurons span a range of densities, over seeds.

    Theory: -0.5 with BN; measured about -0.42 at fan-in 64 and -0.475 at 256, because BN's gradient is
    orthogonal to w_i, which removes one of the k live directions (docs/method.md section 2).
    """
    raw, corrected = [], []
    for seed in range(seeds):
        stats = density_spread_gradients(fan_in=fan_in, neurons=neurons, density_range=density_range, norm=norm,
                                         seed=seed, batch=batch, data=data)
        raw.append(stats["slope_raw"])
        corrected.append(stats["slope_corrected"])
    raw_t, cor_t = torch.tensor(raw), torch.tensor(corrected)
    return {"slope_raw": float(raw_t.mean()), "slope_corrected": float(cor_t.mean()),
            "raw_per_seed": raw, "corrected_per_seed": corrected, "norm": norm, "fan_in": fan_in}


def neuron_step_run(
    data, *, sparseopt: bool, hidden: int = 256, spread: float = 100.0, norm: str = "bn", lr: float = 0.5,
    steps: int = 20, batch_size: int = 128, seed: int = 0,
) -> list[dict]:
    """``NeuronStepTracker`` records of a few SGD steps on a hidden layer with a ``spread``-fold density range.

    The MLP's first layer ``fc1`` keeps log-uniformly spread neuron densities; BN (or ``norm``) after it; SGD with
    momentum, with SparseOpt on or off (the masked baseline). ``data`` is an ``ImageData`` (use fan-in >= 784:
    with 64 inputs the sparsest neurons keep 1-2 weights and BN gives a 1-weight neuron no gradient at all).
    """
    from .optim import SparseOpt

    torch.manual_seed(seed)
    model = mlp(math.prod(data.shape), hidden, data.num_classes, norm=norm)
    masks = sparsify(model, 0.0, "uniform", dense=["head"], seed=seed)
    gen = torch.Generator().manual_seed(seed)
    dens = torch.exp(-math.log(spread) * torch.rand(hidden, generator=gen))
    masks.set_mask("fc1", per_neuron_density_mask(tuple(model.fc1.weight.shape), dens, gen))
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), masks, enabled=sparseopt)
    tracker = NeuronStepTracker(masks, "fc1")
    loader = data.loader("train", batch_size=batch_size, seed=seed)
    model.train()
    for t in range(1, steps + 1):
        x, y = next(iter(loader))
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        tracker.before()
        opt.step()
        tracker.after(t)
    return tracker.records


@torch.no_grad()
def mask_report(masks: SparseMasks, dst=None) -> dict:
    """Topology facts per layer, and the two invariants (inactive weight and state exactly 0)."""
    layers = {}
    for name in masks:
        live = masks.neuron_live(name).cpu()
        layers[name] = {
            "shape": list(masks[name].shape), "sparsity": 1.0 - masks.live_count(name) / masks.numel(name),
            "active_neurons": int((live > 0).sum()), "neurons": int(live.numel()),
            "fan_in_histogram": torch.bincount(live, minlength=masks.fan_in(name) + 1).tolist(),
            "fan_in_cv": float(live.float().std() / live.float().mean().clamp_min(1e-12)),
        }
    report = {"sparsity": masks.sparsity(), "model_sparsity": masks.model_sparsity(),  # masked layers / all weights
              "layers": layers, "inactive_max": masks.inactive_max()}
    if dst is not None:
        report["itop"] = dst.itop_rate()
    return report


@dataclass
class NeuronStepTracker:
    """Per-neuron relative step |dw_i|/|w_i| and weight norm |w_i| against density, step by step.

    Call ``before()`` just before ``optimizer.step()`` and ``after(step)`` just after; each ``after`` appends a
    record with the per-neuron arrays and the fitted log-log slopes on density. Costs a weight copy per tracked
    step, so track one layer and a few steps (it is a diagnostic, not part of the training step).
    """

    masks: SparseMasks
    name: str
    records: list = field(default_factory=list)
    _prev: torch.Tensor | None = None

    def before(self) -> None:
        self._prev = self.masks.modules[self.name].weight.detach().clone()

    @torch.no_grad()
    def after(self, step: int) -> dict:
        if self._prev is None:
            raise RuntimeError("call before() just before optimizer.step(), then after()")
        w = self.masks.modules[self.name].weight.detach()
        live = self.masks.neuron_live(self.name)
        active = live > 0
        density = (live.float() / self.masks.fan_in(self.name))[active]
        rows = self.masks.neuron_rows
        norm_prev = rows(self.name, self._prev).norm(dim=1)[active]
        step_norm = rows(self.name, w - self._prev).norm(dim=1)[active]
        rel = step_norm / norm_prev.clamp_min(1e-12)
        norm = rows(self.name, w).norm(dim=1)[active]
        record = {
            "step": step, "density": density.cpu(), "relative_step": rel.cpu(), "weight_norm": norm.cpu(),
            "slope_relative_step": fit_loglog_slope(density, rel), "slope_weight_norm": fit_loglog_slope(density, norm),
            "median_relative_step": float(rel.median()),
        }
        self.records.append(record)
        self._prev = None
        return record


def selection_effect(
    method: str = "rigl", *, sparsity: float = 0.95, hidden: int = 256, steps: int = 600, delta_t: int = 50,
    batch: int = 128, lr: float = 0.1, seed: int = 0, data: tuple[torch.Tensor, torch.Tensor] | None = None,
    sparseopt: bool = False,
) -> dict:
    """Why the raw skew slope turns positive after RigL updates: RigL makes the large-gradient neurons denser.

    Our extension (docs/method.md section 6), measured on the paper's 2-layer MLP with BN (first layer ``fc1``)
    trained with ``method`` ("rigl" grows at the largest |dense gradient|, "set" at random). At every topology
    update it records, for the first layer's active neurons, before the update:
    ``slope_raw``: the log-log slope of mean |raw gradient| per live weight on density (the skew of the mask made
    by the earlier updates; theory -0.5 for a mask that does not depend on the gradients) and
    ``selection``: the correlation, over neurons, between log mean |raw gradient| per live weight and the
    neuron's density change made by this update (grown minus dropped, over fan-in). A positive ``selection``
    means the update moves weights towards the neurons with large gradients; after a few such updates density
    and gradient scale are positively related, so the slope rises above -0.5 and can turn positive, and a
    correction that assumes a gradient-independent mask (SparseOpt's +0.5) moves it further from 0.
    ``data``: (x, y) with x flattened and standardised. The default, scikit-learn's 8x8 digits, leaves about 3
    weights per neuron at 95% (too few for a slope): pass 784-pixel data such as Fashion-MNIST (notebook 05).
    """
    from .dst import METHODS
    from .optim import SparseOpt

    x, y = default_probe_data() if data is None else data
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = mlp(x.shape[1], hidden, int(y.max()) + 1, norm="bn")
    masks = sparsify(model, sparsity, "uniform", dense=["head"], seed=seed)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), masks, enabled=sparseopt)
    dst = METHODS[method](masks, opt, delta_t=delta_t, alpha=0.3, t_end=0.75, total_steps=steps, seed=seed)
    fan_in = x.shape[1]
    updates = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        record = None
        if dst.schedule.is_update(dst.t + 1):
            before = neuron_gradients(masks, "fc1")
            live_before = masks.neuron_live("fc1").double()
            record = {"step": step, "slope_raw": before["slope_raw"], "slope_corrected": before["slope_corrected"]}
        opt.step()
        dst.step()
        if record is not None:
            active = live_before > 0
            change = (masks.neuron_live("fc1").double() - live_before)[active] / fan_in
            grad = before["raw"].double().clamp_min(1e-30).log()
            record["selection"] = _correlation(grad, change)
            record["density_cv"] = float(before["density"].std() / before["density"].mean())
            updates.append(record)
    return {"method": method, "sparsity": sparsity, "updates": updates,
            "slope_first": updates[0]["slope_raw"] if updates else float("nan"),
            "slope_last": updates[-1]["slope_raw"] if updates else float("nan"),
            "selection_mean": sum(u["selection"] for u in updates) / len(updates) if updates else float("nan")}


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denom = (a.square().sum() * b.square().sum()).sqrt()
    return float((a * b).sum() / denom) if denom > 0 else 0.0


# ----- the skew metrics of every layer at once (what the trainer records at each topology update) --------------
SKEW_COLUMNS = ("slope_raw", "slope_corrected", "distinct_densities", "rotation_deg")


@torch.no_grad()
def skew_table(masks: SparseMasks, flat: torch.Tensor | None = None) -> torch.Tensor:
    """The skew metrics of the raw gradient, one row per masked layer (``SKEW_COLUMNS``), as a device table.

    ``flat``: the raw gradient in the masks' flat layout (the trainer's copy, taken before the optimizer masked
    it); None reads ``.grad`` (call after backward, before the optimizer step). Row i holds layer i's log-log
    slope of per-neuron mean |grad| per live weight on neuron density, raw and SparseOpt-corrected, the number
    of distinct densities among its active neurons, and the angle between its raw and corrected gradient. All
    layers at once with segment sums over the flat layout: a fixed number of kernels (per-layer calls cost about
    20 ms per update for ResNet-20 on an H200, Python-bound), no host read: :func:`skew_summary` reads it later.
    A layer without a gradient gets no angle (NaN) and no densities (0).
    """
    layout = masks.layout()
    mods = list(masks.modules.values())
    no_grad = [i for i, m in enumerate(mods) if m.weight.grad is None]
    if flat is None:
        flat = layout.gather([torch.zeros_like(m.weight) if m.weight.grad is None else m.weight.grad for m in mods])
    f64 = torch.float64
    mask = layout.gather([m.weight_mask for m in mods])
    gm = flat.to(f64) * mask
    live = layout.row_sum(mask)
    per = layout.row_sum(gm.abs()) / live.clamp_min(1)  # mean |grad| per live weight, per neuron
    sq = layout.row_sum(gm * gm)
    srow = layout.density_ratio(live).sqrt()  # SparseOpt's per-neuron scale
    seg, seg_sum = layout.layer_of_row, layout.rows_to_layers
    log_density = (live / layout.fan_in).clamp_min(1e-300).log()
    slopes = []
    for y in (per, per * srow):
        ok = ((live > 0) & (y > 0)).to(f64)
        lx, ly = log_density * ok, y.clamp_min(1e-300).log() * ok
        n = seg_sum(ok).clamp_min(1)
        dx = (lx - (seg_sum(lx) / n)[seg]) * ok
        dy = (ly - (seg_sum(ly) / n)[seg]) * ok
        slopes.append(seg_sum(dx * dy) / seg_sum(dx * dx))
    width = max(layout.fan_ins) + 1
    seen = torch.zeros(layout.n_layers * width, dtype=f64, device=flat.device).index_add_(
        0, seg * width + live.long(), torch.ones_like(live))
    distinct = (seen.view(layout.n_layers, width)[:, 1:] > 0).sum(1).to(f64)
    cos = seg_sum(sq * srow) / (seg_sum(sq).sqrt() * seg_sum(sq * srow * srow).sqrt()).clamp_min(1e-300)
    angle = torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
    if no_grad:
        angle[no_grad] = float("nan")
        distinct[no_grad] = 0.0
    return torch.stack([slopes[0], slopes[1], distinct, angle], 1)


def skew_summary(rows: list[list[float]]) -> dict:
    """The layer-averaged skew metrics of a :func:`skew_table`'s rows (read to the host); None where no layer
    qualifies. A layer's slope counts only when its active neurons have at least 3 distinct densities: under
    SRigL's constant fan-in (two values, k and k+1) a fitted slope would be noise."""
    fits = [(r[0], r[1]) for r in rows if r[2] >= 3 and math.isfinite(r[0]) and math.isfinite(r[1])]
    angles = [r[3] for r in rows if math.isfinite(r[3])]
    return {
        "slope_raw": sum(f[0] for f in fits) / len(fits) if fits else None,
        "slope_corrected": sum(f[1] for f in fits) / len(fits) if fits else None,
        "rotation_deg": sum(angles) / len(angles) if angles else None,
    }


# ----- the paper's Fig. 3 as rows (the ``skew`` command and the demo print them) -------------------------
def skew_rows(sparsities, norms, seeds: int = 5, hidden: int = 256, data=None) -> list[dict]:
    """:func:`gradient_ratio` at each (norm, sparsity), rounded for a table, a plot or JSON: one dict per point
    with the measured sparse/dense ratio, its std over ``seeds`` and the theory 1/sqrt(1 - s)."""
    rows = []
    for norm in norms:
        for sp in sparsities:
            r = gradient_ratio(sp, norm, data=data, hidden=hidden, seeds=seeds)
            rows.append({"sparsity": sp, "norm": norm, "ratio": round(r["ratio"], 4),
                         "theory": round(r["theory"], 4), "std": round(r["std"], 4)})
    return rows


def format_skew(rows) -> str:
    """:func:`skew_rows` as a fixed-width text table (norm, sparsity, ratio ± std, theory)."""
    lines = [f"{'norm':6s} {'sparsity':>8s} {'ratio':>8s} {'± std':>7s} {'theory':>7s}"]
    for r in rows:
        lines.append(f"{r['norm']:6s} {r['sparsity']:8.2f} {r['ratio']:8.3f} {r.get('std', 0.0):7.3f} "
                     f"{r['theory']:7.3f}")
    return "\n".join(lines)
