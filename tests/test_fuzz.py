"""Hostile input: odd shapes, extreme sparsities, non-finite gradients, bad CLI values.

Every case ends in a clear error or a correct result, never a silent wrong one and never a traceback.
"""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from sparseopt_edu import RigL, SparseOpt, sparsify


@st.composite
def odd_models(draw):
    """Conv stacks with grouped, depthwise and 1x1 convs, and tiny Linear layers (ERK wants density > 1)."""
    layers, c = [], draw(st.sampled_from([1, 2, 3, 4]))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "depthwise", "1x1", "grouped"]))
        if kind == "depthwise":
            layers += [nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c)]
        elif kind == "grouped" and c % 2 == 0:
            out = 2 * c
            layers += [nn.Conv2d(c, out, 3, padding=1, groups=2, bias=False), nn.GroupNorm(1, out)]
            c = out
        else:
            out = draw(st.integers(1, 8))
            k = 1 if kind == "1x1" else 3
            layers += [nn.Conv2d(c, out, k, padding=k // 2), nn.ReLU()]
            c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, draw(st.integers(1, 3)))]
    return nn.Sequential(*layers), layers[0].in_channels


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_in=odd_models(), sparsity=st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.999]), st.floats(0, 0.999)),
       dist=st.sampled_from(["uniform", "er", "erk"]), seed=st.integers(0, 99))
def test_sparsify_and_train_on_odd_models(model_in, sparsity, dist, seed):
    model, channels = model_in
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    if round((1 - sparsity) * n) < layers:
        with pytest.raises(ValueError, match="at least one weight"):
            sparsify(model, sparsity, dist, seed=seed)
        return
    masks = sparsify(model, sparsity, dist, seed=seed)
    assert masks.live_count() == round((1 - sparsity) * n)
    assert all(masks.live_count(name) >= 1 for name in masks)
    opt = SparseOpt(torch.optim.Adam(model.parameters(), lr=1e-2), masks)
    dst = RigL(masks, opt, delta_t=1, alpha=0.5, t_end=10, seed=seed)
    for _ in range(3):
        out = model(torch.randn(4, channels, 5, 5))
        opt.zero_grad()
        out.square().mean().backward()
        opt.step()
        dst.step()
    assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
    assert masks.live_count() == round((1 - sparsity) * n)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_step_changes_no_topology(bad):
    model = nn.Sequential(nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.Linear(8, 2))
    masks = sparsify(model, 0.5)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    dst = RigL(masks, opt, delta_t=1, t_end=10)
    before = {n: m.clone() for n, m in masks.items()}
    model(torch.randn(4, 6)).sum().backward()
    model[0].weight.grad[0, 0] = bad
    opt.step()
    assert dst.step() is False
    assert all(torch.equal(before[n], masks[n]) for n in masks)
    assert "non-finite" in dst.updates[-1]["skipped"]


def test_amp_overflow_step_is_skipped_and_no_topology_update():
    model = nn.Sequential(nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.Linear(8, 2))
    masks = sparsify(model, 0.5)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    dst = RigL(masks, opt, delta_t=1, t_end=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    weights = [p.detach().clone() for p in model.parameters()]
    before = {n: m.clone() for n, m in masks.items()}
    loss = model(torch.randn(4, 6)).sum() * 1e38  # overflows once scaled
    scaler.scale(loss).backward()
    scaler.step(opt)  # skipped: non-finite gradients
    scaler.update()
    assert dst.step() is False and "no gradient" in dst.updates[-1]["skipped"]
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert all(torch.equal(before[n], masks[n]) for n in masks)


CLI = str(Path(sys.executable).parent / "sparseopt-edu")


@pytest.mark.parametrize("args", [
    ["train", "--sparsity", "1.5"],
    ["train", "--sparsity", "nan"],
    ["train", "--epochs", "-1"],
    ["train", "--lr", "0"],
    ["train", "--method", "magic"],
    ["train", "--batch-size", "0"],
    ["train", "--model", "resnet1000"],
    ["train", "--config", "missing.json"],
    ["train", "--config", "BROKEN"],
    ["train", "--dataset", "imagenet"],
    ["skew", "--norm", "batchnorm"],
    ["compare", "--sparsities", "0.9,abc"],
    ["reproduce", "table3"],
])
def test_bad_cli_values_give_one_clear_line(args, tmp_path):
    if "BROKEN" in args:
        (tmp_path / "broken.json").write_text("{not json")
        args = [a if a != "BROKEN" else "broken.json" for a in args]
    result = subprocess.run([CLI, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip(), "an error must say what is wrong"
    assert not math.isnan(len(result.stderr))
