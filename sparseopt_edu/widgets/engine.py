"""How the panels get a trainer: ``sparseopt_edu.train.Trainer`` (docs/TRAINER_API.md), else a small fallback.

The panels are subscribers: they build a trainer from a config dict, pass one callback, and read events
(``kind``, ``step``, ``epoch``, ``data``, ``trainer``). Training logic belongs in the library; the fallback
below exists only so the widgets work (and are tested) before/without the engine package, and implements the
subset of the contract the panels use: ``run()``, ``request_stop()``, ``set_lr()``, ``masks``, ``model``,
``optimizer``, ``dst`` and the "start" / "step" / "topology" / "epoch" / "end" events.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass

import torch
from torch import nn

from .. import diagnostics
from ..data import load_dataset
from ..dst import METHODS
from ..models import build_model
from ..optim import SparseOpt
from ..sparse import sparsify


def engine_name() -> str:
    """"trainer" when ``sparseopt_edu.train`` is importable, else "fallback"."""
    try:
        from ..train import Trainer  # noqa: F401
        return "trainer"
    except Exception:
        return "fallback"


def make_trainer(cfg: dict, callbacks: list, prefer: str = "auto"):
    """A trainer for ``cfg`` (TrainConfig field names): the real engine when present, else the fallback."""
    if prefer in ("auto", "trainer"):
        try:
            from ..train import TrainConfig, Trainer
        except Exception:
            if prefer == "trainer":
                raise
        else:
            names = {f.name for f in dataclasses.fields(TrainConfig)}
            config = TrainConfig(**{k: v for k, v in cfg.items() if k in names})
            try:
                return Trainer(config, callbacks=callbacks, log_every=cfg.get("log_every", 10))
            except TypeError:
                return Trainer(config, callbacks=callbacks)
    return FallbackTrainer(cfg, callbacks)


@dataclass
class Event:
    kind: str
    step: int
    epoch: int
    data: dict
    trainer: object


class FallbackTrainer:
    """A minimal MLP/ResNet loop on the core library (masks, SparseOpt, DST, diagnostics)."""

    def __init__(self, cfg: dict, callbacks=()):
        self.cfg = dict(cfg)
        self.callbacks = list(callbacks)
        c = self.cfg
        self._stop = threading.Event()
        self._lr_request = None
        self._lock = threading.Lock()
        torch.manual_seed(c.get("seed", 0))
        self.device = torch.device("cpu" if c.get("device", "auto") == "auto" and not torch.cuda.is_available()
                                   else ("cuda" if c.get("device", "auto") == "auto" else c["device"]))
        data = load_dataset(c.get("dataset", "digits"))
        if c.get("n_train"):
            data = data.subset(c["n_train"], c.get("n_test"), seed=0)
        self.data = data
        kw = {"hidden": c.get("hidden", 256), "depth": c.get("depth", 1)} if c.get("model", "mlp") == "mlp" else {}
        self.model = build_model(c.get("model", "mlp"), num_classes=data.num_classes, in_shape=data.shape,
                                 norm=c.get("norm", "bn"), **kw).to(self.device)
        self.masks = sparsify(self.model, c.get("sparsity", 0.9), c.get("distribution", "erk"),
                              dense=c.get("dense_layers", ()), seed=c.get("seed", 0))
        lr = c.get("lr", 0.1)
        if c.get("optimizer", "sgd") == "sgd":
            inner = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=c.get("momentum", 0.9),
                                    nesterov=c.get("nesterov", True), weight_decay=c.get("weight_decay", 5e-4))
        else:
            cls = torch.optim.Adam if c["optimizer"] == "adam" else torch.optim.AdamW
            inner = cls(self.model.parameters(), lr=lr, weight_decay=c.get("weight_decay", 0.0))
        self.optimizer = SparseOpt(inner, self.masks, enabled=c.get("sparseopt", True))
        self.train_loader = data.loader("train", batch_size=c.get("batch_size", 128), device=self.device,
                                        seed=c.get("seed", 0))
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = c.get("steps") or c.get("epochs", 10) * self.steps_per_epoch
        method = c.get("method", "static")
        self.dst = METHODS[method](self.masks, self.optimizer, delta_t=c.get("delta_t", 100),
                                   alpha=c.get("alpha", 0.3), t_end=c.get("t_end", 0.75),
                                   total_steps=self.total_steps, seed=c.get("seed", 0)) if method != "dense" else None
        self.base_lr = lr
        self.history = {"epoch": [], "step_log": [], "topology": []}

    # ----- the contract's thread-safe controls ----------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def set_lr(self, lr: float) -> None:
        with self._lock:
            self._lr_request = float(lr)

    # ----- loop -----------------------------------------------------------------------------------------
    def _emit(self, kind, step, epoch, data=None, **more):
        ev = Event(kind, step, epoch, {**(data or {}), **more}, self)
        for cb in self.callbacks:
            cb(ev)

    def _lr_at(self, t: int) -> float:
        if self.cfg.get("schedule", "cosine") == "cosine":
            return self.base_lr * 0.5 * (1 + math.cos(math.pi * min(t, self.total_steps) / self.total_steps))
        return self.base_lr

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        self.model.eval()
        loader = self.data.loader("test", batch_size=512, device=self.device)
        n, loss, correct = 0, 0.0, 0
        for x, y in loader:
            out = self.model(x)
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += y.numel()
        self.model.train()
        return loss / max(n, 1), correct / max(n, 1)

    def _topology(self, x, y) -> dict:
        self.model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.model(x), y).backward()
        first = list(self.masks.names)[0]
        ng = diagnostics.neuron_gradients(self.masks, first)
        angles = diagnostics.rotation_angles(self.masks)
        self.model.zero_grad(set_to_none=True)
        report = diagnostics.mask_report(self.masks, self.dst)
        cvs = [layer["fan_in_cv"] for layer in report["layers"].values()]
        return {"itop": report["itop"], "changed": self.dst.updates[-1].get("changed", {}),
                "slope_raw": ng["slope_raw"], "slope_corrected": ng["slope_corrected"],
                "rotation_deg": sum(angles.values()) / max(len(angles), 1), "fan_in_cv": sum(cvs) / len(cvs),
                "fan_in_cv_first": report["layers"][first]["fan_in_cv"]}

    def run(self):
        t, epoch, reason = 0, 0, "done"
        log_every = self.cfg.get("log_every", 10)
        self._emit("start", 0, 0, config=self.cfg, device=str(self.device),
                   params=sum(p.numel() for p in self.model.parameters()), sparsity=self.masks.sparsity())
        self.model.train()
        while t < self.total_steps and reason == "done":
            t0, seen, correct, loss_sum, n_b = time.perf_counter(), 0, 0, 0.0, 0
            for _ in range(self.steps_per_epoch):
                if self._stop.is_set():
                    reason = "stopped"
                    break
                with self._lock:
                    if self._lr_request is not None:
                        self.base_lr, self._lr_request = self._lr_request, None
                for g in self.optimizer.param_groups:
                    g["lr"] = self._lr_at(t)
                x, y = next(iter(self.train_loader))
                out = self.model(x)
                loss = nn.functional.cross_entropy(out, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                t += 1
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    reason = "nan"
                    break
                loss_sum, n_b = loss_sum + lv, n_b + 1
                correct += int((out.argmax(1) == y).sum())
                seen += y.numel()
                if self.dst is not None and self.dst.step():
                    data = self._topology(x, y)
                    self.history["topology"].append({"step": t, **data})
                    self._emit("topology", t, epoch, data)
                if t % log_every == 0:
                    rec = {"step": t, "loss": lv, "lr": self.optimizer.param_groups[0]["lr"]}
                    self.history["step_log"].append(rec)
                    self._emit("step", t, epoch, rec, images_per_s=seen / max(time.perf_counter() - t0, 1e-9))
                if t >= self.total_steps:
                    break
            if n_b and reason in ("done",):
                epoch += 1
                test_loss, test_acc = self.evaluate()
                rec = {"epoch": epoch, "train_loss": loss_sum / n_b, "train_acc": correct / max(seen, 1),
                       "test_loss": test_loss, "test_acc": test_acc, "time_s": time.perf_counter() - t0,
                       "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)}
                self.history["epoch"].append(rec)
                self._emit("epoch", t, epoch, rec)
        self._emit("end", t, epoch, reason=reason, history=self.history)
        return self.history
