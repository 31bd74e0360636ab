"""Small models for the core-library tests (grouped and 1x1 convs included)."""
import torch
from torch import nn


def small_cnn(groups: int = 2, width: int = 8, classes: int = 5) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes),
    )


def small_mlp(inp: int = 12, hidden: int = 24, classes: int = 5, bn: bool = True) -> nn.Module:
    return nn.Sequential(
        nn.Linear(inp, hidden, bias=not bn), nn.BatchNorm1d(hidden) if bn else nn.Identity(), nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def batch_for(model: nn.Module, n: int = 16, gen: torch.Generator | None = None):
    first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    if isinstance(first, nn.Conv2d):
        x = torch.randn(n, first.in_channels, 6, 6, generator=gen)
    else:
        x = torch.randn(n, first.in_features, generator=gen)
    classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    return x, torch.randint(0, classes, (n,), generator=gen)


def train_steps(model, opt, steps, dst=None, gen=None, after_step=None):
    for _ in range(steps):
        x, y = batch_for(model, gen=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dst is not None:
            dst.step()
        if after_step is not None:
            after_step()
