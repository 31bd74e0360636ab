"""Models: every norm option builds, runs forward/backward, and uses the layer it says it uses."""

import pytest
import torch
import torch.nn as nn

from sparseopt_edu.models import (
    MODELS,
    NORMS,
    ShortcutA,
    build_model,
    gn_groups,
    mlp,
    norm_layer,
    resnet18,
    resnet20,
    resnet32,
    resnet50,
    resnet56,
)

EXPECTED = {  # norm -> (vector layer type, feature-map layer type)
    "bn": (nn.BatchNorm1d, nn.BatchNorm2d),
    "ln": (nn.LayerNorm, nn.GroupNorm),
    "gn": (nn.GroupNorm, nn.GroupNorm),
    "none": (nn.Identity, nn.Identity),
}


def _step(model, x, num_classes):
    out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("norm", NORMS)
def test_norm_layer_types(norm):
    vec, fmap = EXPECTED[norm]
    assert type(norm_layer(norm, 48, spatial=False)) is vec
    assert type(norm_layer(norm, 48, spatial=True)) is fmap


def test_ln_on_feature_maps_is_one_group_and_gn_groups_divide():
    ln = norm_layer("ln", 64, spatial=True)
    assert ln.num_groups == 1 and ln.num_channels == 64
    assert norm_layer("gn", 64, spatial=True).num_groups == 32
    assert norm_layer("gn", 16, spatial=True).num_groups == 16
    assert gn_groups(48) == 24 and gn_groups(100) == 25 and gn_groups(37) == 1
    for c in range(1, 200):
        assert c % gn_groups(c) == 0 and gn_groups(c) <= 32


@pytest.mark.parametrize("norm", NORMS)
def test_mlp_names_and_step(norm):
    torch.manual_seed(0)
    m = mlp(784, 32, 10, depth=2, norm=norm)
    names = dict(m.named_children())
    assert {"fc1", "norm1", "fc2", "norm2", "head"} <= set(names)
    assert type(m.norm1) is EXPECTED[norm][0]
    assert (m.fc1.bias is None) == (norm != "none")
    _step(m, torch.randn(8, 1, 28, 28), 10)


def test_mlp_depth1_is_two_linear_layers():
    m = mlp(64, 16, 10)
    linears = [n for n, mod in m.named_modules() if isinstance(mod, nn.Linear)]
    assert linears == ["fc1", "head"]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("builder", [resnet20, resnet32])
def test_cifar_resnets_step(builder, norm):
    torch.manual_seed(0)
    m = builder(num_classes=100, norm=norm)
    fmap = EXPECTED[norm][1]
    assert type(m.bn1) is fmap and type(m.layer3[0].bn2) is fmap
    if norm == "bn":
        assert not any(isinstance(x, (nn.GroupNorm, nn.LayerNorm)) for x in m.modules())
    _step(m, torch.randn(4, 3, 32, 32), 100)


def test_resnet56_builds_and_runs():
    m = resnet56(num_classes=10)
    _step(m, torch.randn(2, 3, 32, 32), 10)


def test_resnet20_parameter_count_and_option_a_shortcut():
    m = resnet20(num_classes=10)
    n = sum(p.numel() for p in m.parameters())
    assert 0.26e6 <= n <= 0.28e6, n
    shortcuts = [s for s in m.modules() if isinstance(s, ShortcutA)]
    assert len(shortcuts) == 2 and all(not list(s.parameters()) for s in shortcuts)
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).view(2, 16, 4, 4)
    y = ShortcutA(16, 32, 2)(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_resnet32_56_sizes():
    assert 0.45e6 < sum(p.numel() for p in resnet32().parameters()) < 0.48e6
    assert 0.84e6 < sum(p.numel() for p in resnet56().parameters()) < 0.87e6


@pytest.mark.parametrize("norm", NORMS)
def test_resnet18_cifar_stem(norm):
    torch.manual_seed(0)
    m = resnet18(num_classes=10, norm=norm, in_channels=3)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and m.conv1.padding == (1, 1)
    assert isinstance(m.maxpool, nn.Identity)
    assert type(m.bn1) is EXPECTED[norm][1]
    _step(m, torch.randn(2, 3, 32, 32), 10)


def test_resnet50_trains_on_a_tiny_input():
    # a smoke step only: speed is a benchmark's job, never a timed unit test (it failed under load, 12-16 s)
    m = resnet50(num_classes=10, norm="bn")
    assert m.conv1.kernel_size == (7, 7)
    _step(m, torch.randn(2, 3, 64, 64), 10)


@pytest.mark.parametrize("name", MODELS)
def test_build_model_registry(name):
    if name == "resnet50":
        m = build_model(name, num_classes=7, in_shape=(1, 64, 64), norm="gn")
        x = torch.randn(2, 1, 64, 64)
    else:
        m = build_model(name, num_classes=7, in_shape=(1, 16, 16), norm="gn")
        x = torch.randn(2, 1, 16, 16)
    assert m(x).shape == (2, 7)


def test_build_model_mlp_kwargs():
    m = build_model("mlp", num_classes=10, in_shape=(1, 8, 8), norm="bn", hidden=32, depth=3)
    assert m.fc1.in_features == 64 and m.fc3.out_features == 32 and m.head.out_features == 10


def test_bad_names_are_clear():
    with pytest.raises(ValueError, match=r"norm must be one of bn, ln, gn, none; got 'bx'"):
        norm_layer("bx", 8, spatial=True)
    with pytest.raises(ValueError, match="got 'bx'"):
        resnet20(norm="bx")
    with pytest.raises(ValueError, match="got 'batch'"):
        build_model("mlp", num_classes=10, in_shape=(1, 8, 8), norm="batch")
    with pytest.raises(ValueError, match=r"model must be one of mlp, resnet20.*got 'resnet21'"):
        build_model("resnet21", num_classes=10, in_shape=(3, 32, 32))
