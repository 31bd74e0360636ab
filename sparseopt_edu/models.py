"""Models whose normalization layer is a constructor argument.

Why: the whole course compares the same network with and without Batch Norm (the source of the gradient
skew, docs/method.md section 1). Following timm, every builder takes ``norm=`` ("bn", "ln", "gn", "none") instead of
forking the model, so "BN on/off" is one argument everywhere: notebooks, trainer and CLI.

Builders:
    mlp         the paper's Fig. 3 network (Flatten -> fc1 -> norm1 -> ReLU -> head for depth=1)
    resnet20/32/56   He et al. 2016 CIFAR ResNets (16/32/64 channels, option-A shortcuts)
    resnet18    torchvision's ResNet-18 with a CIFAR stem (3x3 conv, stride 1, no max-pool)
    resnet50    torchvision's ResNet-50 (ImageNet shape), never with downloaded weights
    build_model registry by name, used by the trainer and the CLI
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("bn", "ln", "gn", "none")
MODELS = ("mlp", "resnet20", "resnet32", "resnet56", "resnet18", "resnet50")

__all__ = [
    "NORMS", "MODELS", "norm_layer", "gn_groups", "MLP", "mlp", "CifarResNet", "BasicBlock", "ShortcutA",
    "resnet20", "resnet32", "resnet56", "resnet18", "resnet50", "build_model",
]


# ----------------------------------------------------------------------------------------------------------------
# Normalization factory

def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    return norm


def gn_groups(num_channels: int, max_groups: int = 32) -> int:
    """Number of GroupNorm groups: the largest divisor of ``num_channels`` that is <= ``max_groups``.

    Why: GroupNorm needs groups | channels; 32 is Wu & He's default, and a divisor keeps e.g. 48 channels
    working (24 groups) instead of failing.
    """
    for g in range(min(max_groups, num_channels), 0, -1):
        if num_channels % g == 0:
            return g
    return 1


def norm_layer(norm: str, num_features: int, *, spatial: bool) -> nn.Module:
    """Normalization layer for ``num_features`` neurons (channels when ``spatial``).

    - "bn":   BatchNorm1d (vectors) / BatchNorm2d (feature maps): statistics over the batch, per neuron.
              This is the layer that divides each neuron's gradient by its own sigma_i (the skew).
    - "ln":   LayerNorm(num_features) for vectors; for feature maps GroupNorm(1, C), which normalises over
              channels *and* space of each sample (LayerNorm over C x H x W with a per-channel affine).
    - "gn":   GroupNorm with the largest divisor of C that is <= 32 as the number of groups (see gn_groups).
    - "none": nn.Identity (no normalization; the paper's no-BN control).
    """
    _check_norm(norm)
    if norm == "bn":
        return nn.BatchNorm2d(num_features) if spatial else nn.BatchNorm1d(num_features)
    if norm == "ln":
        return nn.GroupNorm(1, num_features) if spatial else nn.LayerNorm(num_features)
    if norm == "gn":
        return nn.GroupNorm(gn_groups(num_features), num_features)
    return nn.Identity()


# ----------------------------------------------------------------------------------------------------------------
# MLP (the paper's Fig. 3 network)

class MLP(nn.Module):
    """Flatten, then ``depth`` blocks Linear -> norm -> ReLU, then a Linear head.

    Module names are part of the API (notebooks and tests refer to them):
    hidden Linear layers ``fc1``, ``fc2``, ...; their norms ``norm1``, ``norm2``, ...; the output ``head``.
    Hidden Linear layers have a bias only when norm == "none" (a following norm would cancel it).
    depth=1 is the paper's 2-layer MNIST MLP (two Linear layers: fc1 and head).
    """

    def __init__(self, in_features: int, hidden: int, out_features: int, depth: int = 1, norm: str = "bn"):
        super().__init__()
        _check_norm(norm)
        if depth < 1:
            raise ValueError(f"depth must be >= 1 (number of hidden layers), got {depth}")
        self.depth, self.norm = depth, norm
        self.flatten = nn.Flatten()
        width = in_features
        for i in range(1, depth + 1):
            setattr(self, f"fc{i}", nn.Linear(width, hidden, bias=(norm == "none")))
            setattr(self, f"norm{i}", norm_layer(norm, hidden, spatial=False))
            width = hidden
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for i in range(1, self.depth + 1):
            x = F.relu(getattr(self, f"norm{i}")(getattr(self, f"fc{i}")(x)))
        return self.head(x)


def mlp(in_features: int, hidden: int, out_features: int, depth: int = 1, norm: str = "bn") -> MLP:
    """The paper's MLP; see :class:`MLP` for the module names."""
    return MLP(in_features, hidden, out_features, depth=depth, norm=norm)


# ----------------------------------------------------------------------------------------------------------------
# CIFAR ResNets (He et al. 2016, section 4.2)

class ShortcutA(nn.Module):
    """Option-A shortcut: identity, subsampled by ``stride`` and zero-padded to ``out_channels``.

    Why option A: it is what He et al. used for the CIFAR ResNets, it has no parameters, so ResNet-20 keeps
    its 0.27M parameters and every prunable weight sits in a conv or the head.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, out_channels - in_channels
        if self.pad < 0:
            raise ValueError(f"option-A shortcut cannot shrink channels: {in_channels} -> {out_channels}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            lo = self.pad // 2
            x = F.pad(x, (0, 0, 0, 0, lo, self.pad - lo))
        return x


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> ReLU -> conv3x3 -> norm, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.bn1 = norm_layer(norm, out_channels, spatial=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.bn2 = norm_layer(norm, out_channels, spatial=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ShortcutA(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2016 CIFAR ResNet-(6n+2): conv 16 -> 3 stages of n BasicBlocks (16/32/64 ch) -> pool -> fc.

    Module names: ``conv1``, ``bn1`` (the stem norm, whatever ``norm`` is), ``layer1..3``, ``fc``.
    Convs use Kaiming-normal init (fan_out, ReLU), as torchvision does. Convs have no bias unless norm="none".
    """

    def __init__(self, n: int, num_classes: int = 10, norm: str = "bn", in_channels: int = 3):
        super().__init__()
        _check_norm(norm)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=(norm == "none"))
        self.bn1 = norm_layer(norm, 16, spatial=True)
        widths, c = (16, 32, 64), 16
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c, w, stride, norm))
                c = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def resnet20(num_classes: int = 10, norm: str = "bn", in_channels: int = 3) -> CifarResNet:
    """ResNet-20 (n=3, about 0.27M parameters): the paper's CIFAR-100 model (Table 2)."""
    return CifarResNet(3, num_classes, norm, in_channels)


def resnet32(num_classes: int = 10, norm: str = "bn", in_channels: int = 3) -> CifarResNet:
    """ResNet-32 (n=5, about 0.46M parameters)."""
    return CifarResNet(5, num_classes, norm, in_channels)


def resnet56(num_classes: int = 10, norm: str = "bn", in_channels: int = 3) -> CifarResNet:
    """ResNet-56 (n=9, about 0.85M parameters)."""
    return CifarResNet(9, num_classes, norm, in_channels)


# ----------------------------------------------------------------------------------------------------------------
# torchvision ResNets with the norm passed in (timm style: an argument, not a copied model)

def _tv_norm(norm: str):
    # torchvision calls norm_layer(num_channels) on feature maps.
    return partial(norm_layer, _check_norm(norm), spatial=True)


def resnet18(num_classes: int = 10, norm: str = "bn", in_channels: int = 3) -> nn.Module:
    """torchvision ResNet-18 with a CIFAR stem: conv1 is 3x3 stride 1 padding 1 and the max-pool is removed.

    Why: on 32x32 inputs the ImageNet stem (7x7/2 + max-pool) throws away 3/4 of the resolution at once.
    This is the model of the GPU throughput measurements in ENV.md.
    """
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes, norm_layer=_tv_norm(norm))
    model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def resnet50(num_classes: int = 1000, norm: str = "bn", in_channels: int = 3) -> nn.Module:
    """torchvision ResNet-50 (ImageNet stem), the paper's Table 1 model. Weights are never downloaded."""
    from torchvision.models import resnet50 as tv_resnet50

    model = tv_resnet50(weights=None, num_classes=num_classes, norm_layer=_tv_norm(norm))
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


# ----------------------------------------------------------------------------------------------------------------
# Registry

def build_model(name: str, *, num_classes: int, in_shape, norm: str = "bn", **kw) -> nn.Module:
    """Build a model by name for data of shape ``in_shape`` = (C, H, W); used by the trainer and the CLI.

    "mlp" takes ``hidden=256, depth=1`` and in_features = C*H*W; the ResNets take in_channels = C.
    """
    _check_norm(norm)
    in_shape = tuple(int(s) for s in in_shape)
    if name == "mlp":
        hidden, depth = kw.pop("hidden", 256), kw.pop("depth", 1)
        if kw:
            raise TypeError(f"mlp got unexpected arguments {sorted(kw)}; it takes hidden= and depth=")
        return mlp(math.prod(in_shape), hidden, num_classes, depth=depth, norm=norm)
    builders = {"resnet20": resnet20, "resnet32": resnet32, "resnet56": resnet56,
                "resnet18": resnet18, "resnet50": resnet50}
    if name not in builders:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return builders[name](num_classes=num_classes, norm=norm, in_channels=in_shape[0], **kw)
