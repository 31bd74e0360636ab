import copy

import pytest
import torch
from torch import nn

from sparseopt_edu import SparseOpt, sparsify
from sparseopt_edu.diagnostics import neuron_gradients, per_neuron_density_mask, skew_slope
from tests.core_models import batch_for, small_cnn, small_mlp, train_steps

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


def twin_runs(make_model, sparsity, fan_in, opt_name, steps=6):
    """Train two identical copies, SparseOpt on vs off (the masked baseline), on the same batches."""
    results = []
    for enabled in (True, False):
        torch.manual_seed(0)
        model = make_model()
        masks = sparsify(model, sparsity, "uniform", fan_in=fan_in, seed=0)
        opt = SparseOpt(OPTIMIZERS[opt_name](model.parameters()), masks, enabled=enabled)
        train_steps(model, opt, steps, gen=torch.Generator().manual_seed(1))
        results.append(model)
    return results


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_identity_on_dense_model_and_under_constant_fan_in(opt_name):
    # 16x8 and 8x4 layers at 75% keep 4 and 2 weights per neuron: budgets divide, fan-in exactly constant
    cases = ((small_cnn, 0.0, "random"), (lambda: small_mlp(inp=16, hidden=8, classes=4), 0.75, "constant"))
    for make_model, sparsity, fan_in in cases:
        on, off = twin_runs(make_model, sparsity, fan_in, opt_name)
        for a, b in zip(on.parameters(), off.parameters()):
            assert torch.equal(a, b)


def test_constant_fan_in_with_remainder_is_identity_up_to_one_weight():
    model = small_mlp(inp=10, hidden=7)
    masks = sparsify(model, 0.5, "uniform", fan_in="constant")  # 35 weights: 5 per neuron
    assert torch.all(masks.neuron_scale("0") == 1.0)
    uneven = sparsify(small_mlp(inp=10, hidden=6), 0.55, "uniform", fan_in="constant")  # 27 over 6: 5,5,5,4,4,4
    scale = uneven.neuron_scale("0")
    assert torch.allclose(scale, torch.tensor([5, 5, 5, 4, 4, 4]).double().mul(6 / 27).sqrt().float())


def test_dense_model_equals_plain_optimizer():
    torch.manual_seed(0)
    a = small_mlp()
    b = copy.deepcopy(a)
    opt_a = SparseOpt(torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9), sparsify(a, 0.0))
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    train_steps(a, opt_a, 4, gen=torch.Generator().manual_seed(2))
    train_steps(b, opt_b, 4, gen=torch.Generator().manual_seed(2))
    for name, p in b.named_parameters():
        assert torch.equal(dict(a.named_parameters())[name], p)


def hetero_layer(seed=0, fan_in=64, neurons=32):
    gen = torch.Generator().manual_seed(seed)
    model = small_mlp(inp=fan_in, hidden=neurons)
    masks = sparsify(model, 0.0, dense=["3"])
    dens = torch.exp(torch.empty(neurons).uniform_(-3, 0, generator=gen))
    masks.set_mask("0", per_neuron_density_mask(tuple(model[0].weight.shape), dens, gen))
    return model, masks


def test_grad_after_step_is_exactly_what_inner_saw():
    model, masks = hetero_layer()
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.0), masks)
    x, y = batch_for(model)
    nn.functional.cross_entropy(model(x), y).backward()
    raw = model[0].weight.grad.clone()
    live = masks.neuron_live("0").double()
    expected_scale = (live * (live > 0).sum() / live.sum()).sqrt().float()
    opt.step()
    assert torch.allclose(model[0].weight.grad, raw * masks["0"] * expected_scale[:, None])
    # d_mean is over active neurons: the correction preserves sum_active d_i / d_mean = n_active
    assert float((expected_scale**2)[live > 0].sum()) == pytest.approx(float((live > 0).sum()), rel=1e-5)


def test_disabled_is_exact_masked_baseline():
    model, masks = hetero_layer()
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.0), masks, enabled=False)
    x, y = batch_for(model)
    nn.functional.cross_entropy(model(x), y).backward()
    raw = model[0].weight.grad.clone()
    opt.step()
    assert torch.equal(model[0].weight.grad, raw * masks["0"])


def test_corrected_minus_raw_slope_is_one_half():
    model, masks = hetero_layer()
    x, y = batch_for(model, n=64)
    nn.functional.cross_entropy(model(x), y).backward()
    stats = neuron_gradients(masks, "0")
    assert stats["slope_corrected"] - stats["slope_raw"] == pytest.approx(0.5, abs=0.01)


def test_physics_raw_slope_minus_half_corrected_flat():
    """With BN, fan-in 256, zero-mean independent inputs, 5 seeds (docs/method.md: about -0.475 at fan-in 256)."""
    result = skew_slope(fan_in=256, neurons=256, seeds=5, norm="bn")
    assert result["slope_raw"] == pytest.approx(-0.5, abs=0.15)
    assert result["slope_corrected"] == pytest.approx(0.0, abs=0.15)
    flat = skew_slope(fan_in=256, neurons=128, seeds=3, norm="none")
    assert abs(flat["slope_raw"]) < 0.2  # no normalisation, no amplification


def test_cosine_scheduler_hooks_and_param_groups_are_shared():
    model = small_mlp()
    masks = sparsify(model, 0.8)
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = SparseOpt(inner, masks)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    for _ in range(2):
        train_steps(model, opt, 1)
        sched.step()
    assert calls == ["pre", "post"] * 2
    assert inner.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups is inner.param_groups and opt.state is inner.state
    extra = nn.Parameter(torch.zeros(3))
    opt.add_param_group({"params": [extra], "lr": 0.01})
    assert len(inner.param_groups) == 2


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    model = small_cnn()
    masks = sparsify(model, 0.8)
    opt = SparseOpt(torch.optim.Adam(model.parameters(), 1e-2), masks, max_grad_norm=5.0)
    train_steps(model, opt, 3, gen=torch.Generator().manual_seed(3))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    assert saved_opt["sparseopt"] == {"enabled": True, "max_grad_norm": 5.0, "scope": "gradient"}
    train_steps(model, opt, 3, gen=torch.Generator().manual_seed(4))
    clone = small_cnn()
    clone_masks = sparsify(clone, 0.8, seed=9)
    clone.load_state_dict(saved_model)
    clone_opt = SparseOpt(torch.optim.Adam(clone.parameters(), 1e-2), clone_masks, enabled=False)
    clone_opt.load_state_dict(saved_opt)
    assert clone_opt.enabled and clone_opt.max_grad_norm == 5.0
    train_steps(clone, clone_opt, 3, gen=torch.Generator().manual_seed(4))
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_clipping_applies_after_correction():
    model, masks = hetero_layer()
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.0), masks, max_grad_norm=1e-3)
    x, y = batch_for(model)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    total = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    assert float(total) == pytest.approx(1e-3, rel=1e-3)
    assert torch.all(model[0].weight.grad[~masks["0"]] == 0)  # inactive entries were not counted


def test_explicit_prepare_grads_then_user_clipping():
    model, masks = hetero_layer()
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.0), masks)
    x, y = batch_for(model)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.prepare_grads()
    corrected = model[0].weight.grad.clone()
    opt.step()  # does not correct twice
    assert torch.equal(model[0].weight.grad, corrected)


@pytest.mark.parametrize("fused", [False, True])
def test_grad_scaler_unscales_before_correction(fused):
    torch.manual_seed(0)
    ref, amp = small_mlp(), None
    amp = copy.deepcopy(ref)
    results = []
    for model, use_scaler in ((ref, False), (amp, True)):
        masks = sparsify(model, 0.7, seed=0)
        opt = SparseOpt(torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused), masks)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10) if use_scaler else None
        gen = torch.Generator().manual_seed(5)
        for _ in range(3):
            x, y = batch_for(model, gen=gen)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        results.append(model)
        assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
    for a, b in zip(*(m.parameters() for m in results)):
        assert torch.allclose(a, b, atol=1e-6)


def test_refuses_bad_arguments():
    model = small_mlp()
    masks = sparsify(model, 0.5)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    with pytest.raises(TypeError, match="already a SparseOpt"):
        SparseOpt(opt, masks)
    with pytest.raises(TypeError, match="SparseMasks"):
        SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), {"0": masks["0"]})
    for bad in (0, "1", float("nan"), -2.0):
        with pytest.raises(ValueError, match="max_grad_norm must be a positive number"):
            SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks, max_grad_norm=bad)
    with pytest.raises(TypeError, match="already masks gradients"):
        masks.attach(opt)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_prepare_then_new_backward_is_masked_again(set_to_none):
    # prepare_grads(); zero_grad(); backward(); step() used to skip the masking: pruned weights moved
    torch.manual_seed(0)
    model = small_mlp()
    masks = sparsify(model, 0.8, seed=0)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), masks)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        x, y = batch_for(model, gen=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.prepare_grads()  # e.g. to clip; then the step is skipped (an AMP overflow) and a new batch comes
        opt.zero_grad(set_to_none=set_to_none)
        x, y = batch_for(model, gen=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}


def test_amp_recipe_with_skipped_overflow_step_keeps_pruned_weights_at_zero():
    # The documented recipe: unscale_ -> prepare_grads -> clip -> scaler.step; an inf gradient skips the step
    torch.manual_seed(0)
    model = small_mlp()
    masks = sparsify(model, 0.8, seed=0)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), masks)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    gen = torch.Generator().manual_seed(4)
    skipped = 0
    for step in range(4):
        x, y = batch_for(model, gen=gen)
        opt.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
        if step == 1:
            model[0].weight.grad[0, 0] = float("inf")  # an overflow: GradScaler skips this step
        scaler.unscale_(opt)
        opt.prepare_grads()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        before = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        skipped += scaler.get_scale() < before
    assert skipped == 1
    assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}


def test_closure_reaches_the_inner_optimizer_and_is_masked():
    calls = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            calls.append(closure is not None)
            return super().step(closure)

    torch.manual_seed(0)
    model = small_mlp()
    masks = sparsify(model, 0.8, seed=0)
    opt = SparseOpt(Recording(model.parameters(), lr=0.1, momentum=0.9), masks)
    x, y = batch_for(model)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [True] and torch.is_tensor(loss) and loss.ndim == 0
    assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
    assert torch.all(model[0].weight.grad[~masks["0"]] == 0)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_scope_update_is_a_per_neuron_learning_rate(opt_name):
    """scope="update": w_new - w_old is the masked optimizer's own update (weight decay included) x sqrt(d_i/d_mean)."""
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(hetero_layer())
    (model, masks), (twin, twin_masks) = models
    opt = SparseOpt(OPTIMIZERS[opt_name](model.parameters()), masks, scope="update")
    ref = SparseOpt(OPTIMIZERS[opt_name](twin.parameters()), twin_masks, enabled=False)  # the masked baseline
    x, y = batch_for(model)
    w0 = model[0].weight.detach().clone()
    for m, o in ((model, opt), (twin, ref)):
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    scale = masks.neuron_scale("0").view(-1, 1) * masks["0"]
    assert not torch.all(scale == 1)
    assert torch.allclose(model[0].weight, w0 + scale * (twin[0].weight - w0), atol=1e-7, rtol=1e-6)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        if name != "0.weight":  # the dense layer, biases and BN affine step exactly like the baseline
            assert torch.equal(a, b), name
    assert torch.equal(model[0].weight.grad, twin[0].weight.grad)  # the gradient itself is only masked


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_scope_update_keeps_pruned_weights_and_equals_inner_on_a_dense_model(opt_name):
    torch.manual_seed(0)
    a = small_mlp()
    b = copy.deepcopy(a)
    opt_a = SparseOpt(OPTIMIZERS[opt_name](a.parameters()), sparsify(a, 0.0), scope="update")
    train_steps(a, opt_a, 4, gen=torch.Generator().manual_seed(2))
    train_steps(b, OPTIMIZERS[opt_name](b.parameters()), 4, gen=torch.Generator().manual_seed(2))
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    model, masks = hetero_layer()
    opt = SparseOpt(OPTIMIZERS[opt_name](model.parameters()), masks, scope="update")
    train_steps(model, opt, 5, gen=torch.Generator().manual_seed(3))
    assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
    assert opt.state_dict()["sparseopt"]["scope"] == "update"
    with pytest.raises(ValueError, match="scope must be one of"):
        SparseOpt(OPTIMIZERS[opt_name](model.parameters()), masks, scope="weights")
