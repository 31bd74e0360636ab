"""Everything a run is built from, one function per part: where it runs, its switches, the model and its masks,
the function the step calls, the optimizer and the DST. ``Trainer.__init__`` calls them in this order.

Construction lives apart from the loop (``engine.py``) so the loop reads top to bottom, and so a notebook can
build one part (say, the optimizer a config makes) without building a trainer.
"""
from __future__ import annotations

import torch

from .. import dst as dst_methods
from ..models import build_model
from ..optim import SparseOpt
from ..sparse import sparsify
from . import distributed
from .config import TrainConfig
from .step import make_loss_fn


def resolve_device(name: str) -> torch.device:
    from ..fast import is_fast

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and not is_fast() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():  # a config error here: ValueError
        raise ValueError(f"device={name!r} but CUDA is not available here (no GPU visible to torch): use "
                         "device='cpu' or 'auto' (--device cpu)")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device={name!r} but this machine has {torch.cuda.device_count()} GPU(s): use cuda:0 "
                         f"to cuda:{torch.cuda.device_count() - 1}, or 'auto'")
    return device


def _auto(value, default: bool) -> bool:
    return default if value == "auto" else bool(value)


def features(cfg: TrainConfig, device: torch.device, dist) -> dict:
    """The resolved GPU switches: "auto" means on where it helps (CUDA), and never on a CPU."""
    cuda = device.type == "cuda"
    conv = cfg.model != "mlp"
    return {
        "amp": cuda and _auto(cfg.amp, True),
        "channels_last": cuda and conv and _auto(cfg.channels_last, True),
        "compile": bool(cfg.compile),
        # CUDA graphs: on by default on CUDA (compile, when asked, then runs inside the graph)
        "cuda_graphs": cuda and _auto(cfg.cuda_graphs, True) and dist is None,
        "ddp": dist is not None,
        "sync_bn": dist is not None and cuda and _auto(cfg.sync_bn, True),
    }


def model_and_masks(cfg: TrainConfig, data, device: torch.device, switches: dict):
    """The model on ``device`` (channels_last when switched on) and its masks (None for a dense run). The method
    decides its initial fan-in (SRigL: constant)."""
    extra = {"hidden": cfg.hidden, "depth": cfg.depth} if cfg.model == "mlp" else {}
    model = build_model(cfg.model, num_classes=data.num_classes, in_shape=data.shape, norm=cfg.norm,
                        **extra).to(device)
    if switches["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    masks = None
    if cfg.method != "dense":
        masks = sparsify(model, cfg.sparsity, cfg.distribution, dense=cfg.dense_layers, seed=cfg.seed,
                         fan_in=dst_methods.initial_fan_in(cfg.method), init=cfg.init)
    if switches["sync_bn"]:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, masks


def forward_functions(model, cfg: TrainConfig, switches: dict, dist, device: torch.device):
    """``(forward_model, loss_fn)``: what evaluation calls, and the training forward ``loss_fn(x, y) -> (loss,
    correct)``. Under DDP both go through the DDP wrapper; with ``compile`` the model is compiled for evaluation,
    and forward, loss and accuracy are compiled as one function for training (the loss and argmax fuse)."""
    net = model
    if dist is not None:
        net = distributed.wrap(model, dist, device, sync_bn=False, grad_dtype=cfg.ddp_grad_dtype)
    forward_model = net
    if switches["compile"]:
        from .compile_cache import enable_persistent_cache

        enable_persistent_cache()  # a later process on this machine reuses the compiled and autotuned kernels
        mode = "max-autotune-no-cudagraphs" if switches["cuda_graphs"] else None
        forward_model = torch.compile(net, mode=mode)
        if dist is None:
            return forward_model, torch.compile(
                make_loss_fn(net, amp=switches["amp"], label_smoothing=cfg.label_smoothing), mode=mode)
        net = forward_model
    return forward_model, make_loss_fn(net, amp=switches["amp"], label_smoothing=cfg.label_smoothing)


def optimizer(cfg: TrainConfig, model, masks, device: torch.device, graphs: bool):
    """The torch optimizer, wrapped in SparseOpt for sparse runs (``enabled=cfg.sparseopt``: the correction, or
    the exact masked baseline).

    Under a CUDA graph the LR must live in a device tensor (a float would be baked into the graph). torch's
    foreach SGD reads a tensor LR as a Python scalar (a sync), its fused SGD takes it as a tensor; Adam/AdamW
    need capturable=True.
    """
    lr = torch.tensor(cfg.lr, device=device) if graphs else cfg.lr
    params = list(model.parameters())
    if cfg.optimizer == "sgd":
        inner = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                                weight_decay=cfg.weight_decay, **({"fused": True} if graphs else {}))
    else:
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        inner = cls(params, lr=lr, weight_decay=cfg.weight_decay,
                    **({"capturable": True, "foreach": True} if graphs else {}))
    if cfg.method == "dense":
        return inner
    return SparseOpt(inner, masks, enabled=cfg.sparseopt, max_grad_norm=cfg.max_grad_norm, scope=cfg.scope)


def dynamic_sparsity(cfg: TrainConfig, masks, opt, total_steps: int, device: torch.device):
    """The DST method (None for a dense run). On a GPU an update's checks and record are read later, at a
    logging step or the epoch's end (``defer_checks``): no host sync per update."""
    if cfg.method == "dense":
        return None
    dst = dst_methods.build(cfg.method, masks, opt, delta_t=cfg.delta_t, alpha=cfg.alpha, t_end=cfg.t_end,
                            total_steps=total_steps, t_end_steps=cfg.t_end_steps, seed=cfg.seed,
                            **dst_methods.options_of(cfg.method, cfg))  # the options the method declares
    dst.defer_checks = device.type == "cuda"
    return dst
