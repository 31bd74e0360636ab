import math
import os

import pytest
import torch
from torch import nn

from sparseopt_edu import RigL, SparseOpt, sparsify
from sparseopt_edu.diagnostics import (
    NeuronStepTracker,
    fit_loglog_slope,
    gradient_ratio,
    mask_report,
    rotation_angles,
    theory_ratio,
)
from tests.core_models import batch_for, small_mlp, train_steps
from tests.test_sparseopt import hetero_layer


def test_fig3_on_real_digits_matches_theory_with_bn_and_is_flat_without():
    bn = gradient_ratio(0.9, "bn", seeds=5)
    none = gradient_ratio(0.9, "none", seeds=5)
    assert bn["theory"] == pytest.approx(1 / math.sqrt(0.1))
    assert abs(bn["ratio"] / theory_ratio(0.9) - 1) < 0.25
    assert 0.8 <= none["ratio"] <= 1.25
    assert gradient_ratio(0.0, "bn", seeds=2)["ratio"] == pytest.approx(1.0)


def test_layernorm_amplifies_too():
    ln = gradient_ratio(0.9, "ln", seeds=3)
    assert ln["ratio"] > 2.0


def test_fit_loglog_slope_recovers_power_law():
    x = torch.linspace(0.05, 1, 50)
    assert fit_loglog_slope(x, 3 * x**-0.5) == pytest.approx(-0.5, abs=1e-6)
    assert math.isnan(fit_loglog_slope(torch.ones(1), torch.ones(1)))


def test_rotation_zero_for_equal_densities_positive_for_spread():
    model = small_mlp(inp=16, hidden=8)
    masks = sparsify(model, 0.75, "uniform", fan_in="constant")
    x, y = batch_for(model)
    nn.functional.cross_entropy(model(x), y).backward()
    assert all(a == pytest.approx(0.0, abs=1e-4) for a in rotation_angles(masks).values())
    model, masks = hetero_layer()
    x, y = batch_for(model)
    nn.functional.cross_entropy(model(x), y).backward()
    assert rotation_angles(masks)["0"] > 5.0


def test_mask_report_invariants_itop_and_histogram():
    model = small_mlp()
    masks = sparsify(model, 0.8)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), masks)
    dst = RigL(masks, opt, delta_t=2, t_end=20)
    train_steps(model, opt, 6, dst=dst)
    report = mask_report(masks, dst)
    assert report["inactive_max"] == {"weight": 0.0, "optimizer_state": 0.0}
    assert report["itop"] > 0.2
    layer = report["layers"]["0"]
    assert sum(layer["fan_in_histogram"]) == 24
    assert sum(i * c for i, c in enumerate(layer["fan_in_histogram"])) == masks.live_count("0")


def test_neuron_step_tracker_records_slopes():
    model, masks = hetero_layer()
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    tracker = NeuronStepTracker(masks, "0")
    for step in range(1, 4):
        x, y = batch_for(model)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        tracker.before()
        opt.step()
        rec = tracker.after(step)
        assert rec["relative_step"].shape == rec["density"].shape
        assert math.isfinite(rec["slope_weight_norm"])
    # dense init then masked: the weight norm grows with density like sqrt(d) at the start
    assert tracker.records[0]["slope_weight_norm"] == pytest.approx(0.5, abs=0.2)
    with pytest.raises(RuntimeError, match="before"):
        tracker.after(9)


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed (make setup installs it as root)")
def test_selection_effect_rigl_grows_where_gradients_are_large():
    """On real Fashion-MNIST: RigL moves weights to the neurons with large gradients (positive selection), SET's
    random growth far less, and RigL spreads the fan-ins while SET keeps them binomially close."""
    from sparseopt_edu.data import load_dataset
    from sparseopt_edu.diagnostics import selection_effect

    fm = load_dataset("fashion_mnist").subset(2000, 10, seed=0)
    x = fm.train_x.flatten(1).float()
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    rigl = selection_effect("rigl", data=(x, fm.train_y), steps=250, delta_t=50, hidden=128, seed=0)
    set_ = selection_effect("set", data=(x, fm.train_y), steps=250, delta_t=50, hidden=128, seed=0)
    assert len(rigl["updates"]) == 3 and all(-1 <= u["selection"] <= 1 for u in rigl["updates"])
    assert rigl["selection_mean"] > 0.1 and rigl["selection_mean"] > set_["selection_mean"] + 0.1
    assert rigl["updates"][-1]["density_cv"] > 2 * set_["updates"][-1]["density_cv"]
    assert rigl["slope_last"] > rigl["slope_first"]
