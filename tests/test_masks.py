import copy

import pytest
import torch
import torchvision
from torch import nn

from sparseopt_edu import SparseOpt, sparsify
from tests.core_models import small_cnn, small_mlp, train_steps


def test_sparsify_registers_bool_buffer_and_zeroes_weights():
    model = small_cnn()
    masks = sparsify(model, 0.8, "erk", seed=1)
    for module in masks.modules.values():
        assert isinstance(module.weight, nn.Parameter) and module.weight.is_leaf
        assert module.weight_mask.dtype == torch.bool and module.weight_mask.shape == module.weight.shape
        assert torch.all(module.weight[~module.weight_mask] == 0)
    n = masks.numel()
    assert masks.live_count() == round(0.2 * n)
    assert masks.sparsity() == pytest.approx(0.8, abs=1 / n)
    # norm layers and biases are never masked
    assert all(isinstance(m, (nn.Linear, nn.Conv2d)) for m in masks.modules.values())


def test_dense_layers_are_left_alone_and_named_errors():
    model = small_mlp()
    masks = sparsify(model, 0.5, dense=["3"])
    assert masks.names == ["0"]
    assert "weight_mask" not in model[3]._buffers
    with pytest.raises(ValueError, match="dense= names no module"):
        sparsify(small_mlp(), 0.5, dense=["fc9"])


def test_torchvision_resnet():
    model = torchvision.models.resnet18(num_classes=10)
    masks = sparsify(model, 0.9, "erk", dense=["conv1"])
    assert "conv1" not in masks and "fc" in masks
    assert masks.live_count() == round(0.1 * masks.numel())


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), got 1.2"):
        sparsify(small_mlp(), 1.2)
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        sparsify(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(ValueError, match="unknown distribution"):
        sparsify(small_mlp(), 0.5, "lognormal")
    model = small_mlp()
    sparsify(model, 0.5)
    with pytest.raises(ValueError, match="already sparsified"):
        sparsify(model, 0.5)
    with pytest.raises(TypeError, match="not an elementwise optimizer"):
        SparseOpt(torch.optim.LBFGS(model.parameters()), sparsify(small_mlp(), 0.5))


def test_attach_keeps_plain_optimizer_sparse_and_without_it_model_densifies():
    model = small_mlp()
    masks = sparsify(model, 0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masks.attach(opt)
    train_steps(model, opt, 5)
    assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
    with pytest.raises(TypeError, match="not an elementwise"):
        masks.attach(torch.optim.LBFGS(model.parameters()))
    unattached = small_mlp()
    m2 = sparsify(unattached, 0.9)
    train_steps(unattached, torch.optim.SGD(unattached.parameters(), lr=0.1), 2)
    assert m2.inactive_max()["weight"] > 0  # what attach() prevents


def test_set_mask_zeroes_outside_and_refreshes_caches():
    model = small_mlp()
    masks = sparsify(model, 0.5)
    opt = SparseOpt(torch.optim.Adam(model.parameters(), 1e-2), masks)
    train_steps(model, opt, 3)
    old = masks["0"].clone()
    new = torch.zeros_like(old)
    new[:, :3] = True
    before = model[0].weight.detach().clone()
    scale_ptr = model[0].weight_grad_scale.data_ptr()
    masks.set_mask("0", new)
    w = model[0].weight.detach()
    assert torch.all(w[~new] == 0)
    assert torch.equal(w[new & old], before[new & old])  # survivors keep their value
    assert torch.all(w[new & ~old] == 0)  # newcomers start at 0
    state = opt.state[model[0].weight]
    assert torch.all(state["exp_avg"][~(new & old)] == 0) and torch.all(state["exp_avg_sq"][~(new & old)] == 0)
    assert masks.live_count("0") == int(new.sum())
    assert model[0].weight_grad_scale.data_ptr() == scale_ptr  # updated in place: CUDA graphs stay valid
    assert torch.equal(model[0].weight_grad_mask, new.float())
    with pytest.raises(ValueError, match="has shape"):
        masks.set_mask("0", torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="keeps no weight"):
        masks.set_mask("0", torch.zeros_like(new))
    with pytest.raises(KeyError, match="no masked layer"):
        masks.set_mask("nope", new)


def test_dense_state_dict_load_reapplies_masks_and_remove_gives_plain_model():
    dense = small_cnn()
    dense_state = copy.deepcopy(dense.state_dict())
    model = small_cnn()
    masks = sparsify(model, 0.7)
    model.load_state_dict(dense_state)  # strict: works although the dense state has no weight_mask
    for module in masks.modules.values():
        assert torch.all(module.weight[~module.weight_mask] == 0)
    # a sparse state_dict round-trips with its masks
    sparse_state = copy.deepcopy(model.state_dict())
    other = small_cnn()
    other_masks = sparsify(other, 0.7, seed=5)
    other.load_state_dict(sparse_state)
    for name in masks:
        assert torch.equal(other_masks[name], masks[name])
        assert other_masks.live_count(name) == masks.live_count(name)
    masks.remove()
    assert not any("mask" in k or "grad_scale" in k for k in model.state_dict())
    small_cnn().load_state_dict(model.state_dict(), strict=True)


def test_loading_a_sparse_state_dict_zeroes_state_outside_the_new_masks_and_refreshes_caches():
    """The load path goes through the same flat update as a topology change (one layer at a time)."""
    source = small_cnn()
    source_masks = sparsify(source, 0.7, seed=5)
    model = small_cnn()
    masks = sparsify(model, 0.7, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masks.attach(opt)
    for p in model.parameters():
        opt.state[p]["momentum_buffer"] = torch.ones_like(p)
    version = masks.version
    model.load_state_dict(source.state_dict())
    assert masks.version == version + len(masks)  # one change per loaded layer
    for name, module in masks.modules.items():
        mask = source_masks[name]
        assert torch.equal(masks[name], mask) and masks.live_count(name) == int(mask.sum())
        assert torch.equal(opt.state[module.weight]["momentum_buffer"], mask.float())
        assert torch.equal(module.weight_grad_mask, mask.float())
        live = mask.flatten(1).sum(1).double()
        factor = (live * (live > 0).sum() / live.sum()).sqrt().float()
        assert torch.allclose(module.weight_grad_scale, mask.float() * factor.view(-1, *[1] * (mask.dim() - 1)))


def test_state_policy_is_settable_checked_and_saved():
    masks = sparsify(small_mlp(), 0.5)
    masks.state_policy = "warm"
    assert masks.state_dict()["state_policy"] == "warm" and masks.optimizer_states.policy == "warm"
    with pytest.raises(ValueError, match="state_policy must be one of"):
        masks.state_policy = "hot"
    with pytest.raises(ValueError, match="state_policy must be one of"):
        sparsify(small_mlp(), 0.5, state_policy="hot")


def test_masks_state_dict_round_trip_and_mismatch_errors():
    model = small_mlp()
    masks = sparsify(model, 0.6, seed=3)
    state = masks.state_dict()
    model2 = small_mlp()
    masks2 = sparsify(model2, 0.6, seed=4)
    masks2.load_state_dict(state)
    assert all(torch.equal(masks2[n], masks[n]) for n in masks)
    wrong = sparsify(small_mlp(hidden=7), 0.6)
    with pytest.raises(ValueError, match="different model"):
        wrong.load_state_dict(state)
    with pytest.raises(ValueError, match="do not match"):
        sparsify(small_cnn(), 0.6).load_state_dict(state)
    with pytest.raises(ValueError, match="not a SparseMasks state_dict"):
        masks.load_state_dict({"foo": 1})


def test_repr_table_and_neuron_density():
    model = small_mlp(inp=10, hidden=4)
    masks = sparsify(model, 0.5, "uniform")
    text = repr(masks)
    assert "layer" in text and "active neurons" in text and "4x10" in text
    dens = masks.neuron_density("0")
    assert dens.shape == (4,)
    assert torch.allclose(dens, masks["0"].float().mean(1))


def test_constant_fan_in_rule():
    model = small_mlp(inp=10, hidden=7)
    masks = sparsify(model, 0.5, "uniform", fan_in="constant")
    live = masks.neuron_live("0")
    budget = masks.live_count("0")  # 35 over 7 neurons: 5 each
    assert live.tolist() == [budget // 7 + (i < budget % 7) for i in range(7)]


def test_sparse_init_equalises_neuron_norms():
    torch.manual_seed(0)
    model = nn.Linear(400, 64)
    masks = sparsify(model, 0.9, "uniform", init="sparse")
    norms = model.weight.detach().norm(dim=1)
    dense_norm = nn.Linear(400, 64).weight.detach().norm(dim=1).mean()
    assert norms.mean() == pytest.approx(float(dense_norm), rel=0.1)
    assert masks.inactive_max()["weight"] == 0
