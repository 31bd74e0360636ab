"""The training loop: eager on CPU (the reference), one CUDA graph per step on CUDA; events for subscribers.

One step, in this order (docs/method.md section 5: the optimizer step runs on an update step, then the topology
changes): LR for this step -> forward (bf16 autocast + channels_last on CUDA only) -> backward -> on topology
update steps only, a snapshot of the skew metrics from the raw gradient -> ``optimizer.step()`` (SparseOpt with the
correction on, SparseOpt(enabled=False) for the exact masked baseline, the plain optimizer for ``method="dense"``)
-> ``dst.step()``. Comparisons between the baseline and SparseOpt therefore differ in one switch.

No host sync per step: the loss and the correct count are summed into device tensors (in place, inside the CUDA
graph on CUDA) and read only every ``log_every`` steps and at the end of an epoch. Topology updates read their
checks and diagnostics at once on a CPU; on CUDA they read nothing (``DynamicSparsity.defer_checks``) and their
"topology" events follow at the next logging step or epoch end. A NaN loss is therefore noticed at the next
logging step, and the run stops with reason "nan" keeping its last checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data import load_dataset
from ..dst import METHODS
from ..models import build_model
from ..optim import SparseOpt
from ..sparse import sparsify
from . import checkpoint as ckpt
from . import distributed
from .config import TrainConfig
from .events import Event, History
from .runs import CHECKPOINT, CONFIG, RunLock, RunWriteError, check_writable, clean_temp, write_records

#: config fields that say where and how a run executes, not what it computes: a resume may change them
HOW_FIELDS = ("run_dir", "resume", "progress", "device", "data_root", "download", "amp", "channels_last",
              "compile", "cuda_graphs", "checkpoint_every_epochs")
#: the run's length: a resume may change it while the new end is not behind the checkpoint (recorded in
#: ``history.meta["length_changes"]``)
LENGTH_FIELDS = ("epochs", "steps")
#: what load_checkpoint reads
CHECKPOINT_KEYS = ("version", "config", "model", "masks", "optimizer", "lr_schedule", "dst", "train_loader", "loop",
                   "history", "rng")


def config_differences(saved: dict, config: TrainConfig, skip=HOW_FIELDS + LENGTH_FIELDS) -> list[str]:
    """The fields that define a run (all but ``skip``) whose values differ between ``saved`` (a config dict, as
    in config.json or a checkpoint) and ``config``, as "name (saved vs new)" strings. JSON spelling decides
    equality, so 1 (steps) and 1.0 (a fraction) differ."""
    defaults = {f: v.default for f, v in TrainConfig.__dataclass_fields__.items()}
    out = []
    for key, value in config.to_dict().items():
        if key in skip:
            continue
        old = saved.get(key, defaults.get(key))
        if json.dumps(old, sort_keys=True, default=str) != json.dumps(value, sort_keys=True, default=str):
            out.append(f"{key} ({old!r} in the run, {value!r} here)")
    return out


class LRSchedule:
    """lr(t) = base_lr x factor(t), t = optimizer steps done before this step (0-based).

    Linear warm-up over ``warmup_steps`` ((t+1)/warmup), then "constant", "cosine" (to 0 at the last step),
    "linear" (to 0) or "step" (x0.1 at 50% and again at 75% of the steps after warm-up). ``set_lr`` on the
    trainer changes ``base_lr``: the schedule's factor keeps applying on top of it.
    """

    def __init__(self, kind: str, base_lr: float, total_steps: int, warmup_steps: int = 0):
        self.kind, self.base_lr, self.total_steps, self.warmup_steps = kind, float(base_lr), total_steps, warmup_steps

    def factor(self, t: int) -> float:
        w = self.warmup_steps
        if w and t < w:
            return (t + 1) / w
        if self.kind == "constant":
            return 1.0
        p = (t - w) / max(1, self.total_steps - w)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * p))
        if self.kind == "linear":
            return max(0.0, 1.0 - p)
        return 0.1 ** ((p >= 0.5) + (p >= 0.75))  # "step"

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.factor(t)

    def state_dict(self) -> dict:
        return {"kind": self.kind, "base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict) -> None:
        self.base_lr = float(state["base_lr"])


#: the last dataset loaded (read-only use: loaders copy or gather from it, subsets clone)
_DATA_CACHE: dict = {}


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


class Trainer:
    """Builds data, model, masks, optimizer and DST from a :class:`TrainConfig`, and runs the loop.

    Attributes: ``model``, ``masks`` (None for dense), ``optimizer`` (SparseOpt, or the torch optimizer for
    dense), ``dst`` (None for dense), ``history``, ``step`` (optimizer steps done), ``epoch`` (epochs done),
    ``device``, ``features`` (the resolved amp/channels_last/compile/cuda_graphs switches).
    """

    def __init__(self, config: TrainConfig | dict, callbacks=()):
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        config.validate()
        self.config = cfg = config
        self.device = resolve_device(cfg.device)
        self.dist = distributed.from_env(self.device.type)
        if self.dist is not None and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.is_main = self.dist is None or self.dist.is_main
        self._run_lock = None
        if cfg.run_dir and self.is_main:  # before any work: a read-only folder fails now, not after training
            check_writable(cfg.run_dir)
        self.callbacks = list(callbacks) if self.is_main else []  # events, logs and records on rank 0 only
        cuda = self.device.type == "cuda"
        conv = cfg.model != "mlp"
        self.features = {
            "amp": cuda and _auto(cfg.amp, True),
            "channels_last": cuda and conv and _auto(cfg.channels_last, True),
            "compile": bool(cfg.compile),
            # CUDA graphs: on by default on CUDA (compile, when asked, then runs inside the graph)
            "cuda_graphs": cuda and _auto(cfg.cuda_graphs, True) and self.dist is None,
            "ddp": self.dist is not None,
            "sync_bn": self.dist is not None and cuda and _auto(cfg.sync_bn, True),
        }
        if cuda:  # fixed shapes: let cuDNN time its algorithms once (on every CUDA run: it is process-wide)
            torch.backends.cudnn.benchmark = True
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._lr_request: float | None = None

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.data = self._load_data()
        if self.dist is not None:
            self.data = distributed.shard(self.data, self.dist)
        self.model = build_model(cfg.model, num_classes=self.data.num_classes, in_shape=self.data.shape,
                                 norm=cfg.norm, **({"hidden": cfg.hidden, "depth": cfg.depth}
                                                   if cfg.model == "mlp" else {})).to(self.device)
        memory_format = torch.channels_last if self.features["channels_last"] else torch.contiguous_format
        if self.features["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.masks = None
        if cfg.method != "dense":
            self.masks = sparsify(self.model, cfg.sparsity, cfg.distribution, dense=cfg.dense_layers, seed=cfg.seed,
                                  fan_in="constant" if cfg.method == "srigl" else "random", init=cfg.init)
        if self.features["sync_bn"]:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.forward_model = self.model
        if self.dist is not None:
            self.forward_model = distributed.wrap(self.model, self.dist, self.device, sync_bn=False,
                                                  grad_dtype=cfg.ddp_grad_dtype)
        self._train_model = self.forward_model  # what the training step calls (forward_model serves evaluation)
        self._loss_and_correct = self._forward_loss
        if self.features["compile"]:
            mode = "max-autotune-no-cudagraphs" if self.features["cuda_graphs"] else None
            self.forward_model = torch.compile(self.forward_model, mode=mode)
            if self.dist is None:  # forward, loss and accuracy compiled as one: the loss and argmax fuse
                self._loss_and_correct = torch.compile(self._forward_loss, mode=mode)
            else:
                self._train_model = self.forward_model

        self.train_loader = self.data.loader("train", cfg.batch_size, self.device, seed=cfg.seed,
                                             memory_format=memory_format)
        self.test_loader = self.data.loader("test", max(cfg.batch_size, 500), self.device,
                                            memory_format=memory_format)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set ({len(self.data)} "
                             "images): lower batch_size or raise n_train")
        self.total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * self.steps_per_epoch
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)

        self.optimizer = self._build_optimizer()
        self.lr_schedule = LRSchedule(cfg.schedule, cfg.lr, self.total_steps, cfg.warmup_steps)
        self.dst = None
        if cfg.method != "dense":
            kwargs = {"delta_t": cfg.delta_t, "alpha": cfg.alpha, "t_end": cfg.t_end, "total_steps": self.total_steps,
                      "t_end_steps": cfg.t_end_steps, "seed": cfg.seed}
            if cfg.method in ("rigl", "srigl"):
                kwargs["grow_from"] = cfg.grow_from
            self.dst = METHODS[cfg.method](self.masks, self.optimizer, **kwargs)
            # on a GPU an update's checks and record are read later, at a logging step or the epoch's end
            self.dst.defer_checks = self.device.type == "cuda"
        self._topology_pending: list[tuple] = []  # (DST step, trainer step, epoch, skew table) not yet emitted
        self._records_done = 0  # DST records already turned into events

        self.history = History()
        self.history.config = cfg.to_dict()
        self.step = 0
        self.epoch = 0
        # device accumulators, created once and changed only in place: a captured step graph adds into them
        (self._loss_sum, self._correct), (self._win_loss, _) = self._zeros(), self._zeros()
        self._reset_epoch_accumulators()
        self._reset_window()
        self._graph = None
        if self.features["cuda_graphs"]:
            from .graphs import GraphStep

            self._graph = GraphStep(self)
        self.resumed_from: str | None = None
        self._lock_run()
        if cfg.resume:
            path = os.path.join(cfg.run_dir, CHECKPOINT)
            if os.path.isfile(path):
                try:
                    self.load_checkpoint(path)
                except BaseException:
                    self.release()
                    raise

    # ----- the run folder ---------------------------------------------------------------------------------
    def _lock_run(self) -> None:
        """Hold the run folder's lock (rank 0): two runs never write one folder; drop a killed writer's temp files."""
        if self.config.run_dir and self.is_main and self._run_lock is None:
            self._run_lock = RunLock(self.config.run_dir).acquire()
            clean_temp(self.config.run_dir)

    def release(self) -> None:
        """Release the run folder (done at the end of ``run()``; ``run()`` takes it again)."""
        lock, self._run_lock = self._run_lock, None
        if lock is not None:
            lock.release()

    def _write_progress(self) -> None:
        """config.json and the history so far (reason "running"): a run killed later can be resumed and read."""
        if self.config.run_dir and self.is_main:
            history = History.from_dict(self.history.to_dict())
            history.reason = "running"
            write_records(self.config.run_dir, self.config, history)

    # ----- construction helpers ---------------------------------------------------------------------------
    def _load_data(self):
        cfg = self.config
        kw = dict(cfg.data_kwargs)
        if cfg.dataset == "shapes" and cfg.n_train is not None:  # generate only what is used
            kw.setdefault("n_train", cfg.n_train)
            kw.setdefault("n_test", cfg.n_test or max(1, cfg.n_train // 5))
        if cfg.dataset == "fake" and cfg.n_train is not None:
            kw.setdefault("n", cfg.n_train)
            kw.setdefault("n_test", cfg.n_test or max(1, cfg.n_train // 5))
        key = (cfg.dataset, os.path.abspath(cfg.data_root), repr(sorted(kw.items())))
        data = _DATA_CACHE.get(key)
        if data is None:
            data = load_dataset(cfg.dataset, root=cfg.data_root, download=cfg.download, **kw)
            _DATA_CACHE.clear()  # keep one dataset: a grid of runs on the same data loads it once
            _DATA_CACHE[key] = data
        n_train = min(cfg.n_train, len(data)) if cfg.n_train else len(data)
        n_test = min(cfg.n_test, data.test_x.shape[0]) if cfg.n_test else data.test_x.shape[0]
        if n_train < len(data) or n_test < data.test_x.shape[0]:
            data = data.subset(n_train, n_test, seed=cfg.seed)
        return data

    def _build_optimizer(self):
        cfg = self.config
        graphs = self.features["cuda_graphs"]
        # Under a CUDA graph the LR must live in a device tensor (a float would be baked into the graph).
        # torch's foreach SGD reads a tensor LR as a Python scalar (a sync), its fused SGD takes it as a tensor;
        # Adam/AdamW need capturable=True.
        lr = torch.tensor(cfg.lr, device=self.device) if graphs else cfg.lr
        params = list(self.model.parameters())
        if cfg.optimizer == "sgd":
            inner = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                                    weight_decay=cfg.weight_decay, **({"fused": True} if graphs else {}))
        else:
            cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
            inner = cls(params, lr=lr, weight_decay=cfg.weight_decay,
                        **({"capturable": True, "foreach": True} if graphs else {}))
        if cfg.method == "dense":
            return inner
        return SparseOpt(inner, self.masks, enabled=cfg.sparseopt, max_grad_norm=cfg.max_grad_norm, scope=cfg.scope)

    # ----- control (thread-safe: widgets call these from other threads) -----------------------------------
    def request_stop(self) -> None:
        """Ask the loop to stop after the current step; it then emits "end" with reason "stopped"."""
        self._stop.set()

    def set_lr(self, lr: float) -> None:
        """Set the base LR from the next step on (the schedule's factor still applies on top of it)."""
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        with self._lock:
            self._lr_request = float(lr)

    def _apply_requests(self) -> None:
        with self._lock:
            lr, self._lr_request = self._lr_request, None
        if lr is not None:
            self.lr_schedule.base_lr = lr

    def _write_lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            if torch.is_tensor(group["lr"]):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    # ----- events -----------------------------------------------------------------------------------------
    def _emit(self, kind: str, data: dict, step: int | None = None, epoch: int | None = None) -> None:
        event = Event(kind, self.step if step is None else step, self.epoch if epoch is None else epoch, data, self)
        for fn in self.callbacks:
            fn(event)

    # ----- one step ---------------------------------------------------------------------------------------
    def _autocast(self):
        if self.features["amp"]:
            # cache off: required under CUDA-graph capture, harmless eagerly
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def _forward_loss(self, x, y):
        """The training forward: (loss, correct count), both on the device (compiled as one with ``compile``)."""
        with self._autocast():
            out = self._train_model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=self.config.label_smoothing)
        return loss, (out.detach().argmax(1) == y).sum()

    def _core_step(self, x, y, snapshot: bool = False):
        """forward, backward, (skew snapshot), optimizer step; returns (loss, correct, skew) on the device."""
        loss, correct = self._loss_and_correct(x, y)
        loss.backward()
        skew = self._skew_snapshot() if snapshot else None
        if self.masks is None and self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm, foreach=True)
        self.optimizer.step()
        return loss.detach(), correct, skew

    @torch.no_grad()
    def _skew_snapshot(self, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Skew metrics of the raw gradient (called after backward, before the optimizer masks it), as a device
        table (one row per layer: raw slope, corrected slope, distinct densities, angle) that
        :func:`_skew_summary` reads later, at the next flush of topology events: no host sync here.

        ``flat``: the raw gradient in the masks' flat layout (the CUDA graph's copy); None reads ``.grad``.
        Same quantities as ``diagnostics.neuron_gradients`` (log-log slope of per-neuron mean |grad| per live
        weight on neuron density, raw and SparseOpt-corrected) and ``diagnostics.rotation_angles``, averaged over
        layers, but all layers at once with segment sums over the flat layout: a fixed number of kernels (per-layer
        calls cost about 20 ms per update for ResNet-20 on an H200, Python-bound) and no host-to-device copy
        (each would wait for the GPU). A layer's slope counts only when its active neurons have at least 3
        distinct densities: under SRigL's constant fan-in (two values, k and k+1) a fitted slope would be noise.
        A layer without a gradient counts for nothing.
        """
        layout = self.masks.layout()
        mods = list(self.masks.modules.values())
        no_grad = [i for i, m in enumerate(mods) if m.weight.grad is None] if flat is None else []
        if flat is None:  # eager: the raw gradient is still in .grad
            flat = layout.gather([torch.zeros_like(m.weight) if m.weight.grad is None else m.weight.grad
                                  for m in mods])
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

    # ----- topology events (emitted once the update's checks have been read: see DynamicSparsity.flush) -----
    def _flush_topology(self) -> None:
        """Emit the "topology" events of the updates since the last flush (two host reads for all of them)."""
        pending, self._topology_pending = self._topology_pending, []
        if not pending:
            return
        updates = self.dst.updates  # flushes the DST: checks and records
        records = {r["step"]: r for r in updates[self._records_done:]}
        self._records_done = len(updates)
        tables = [p[3] for p in pending if p[3] is not None]
        rows = torch.cat(tables).tolist() if tables else []  # the skew tables' one host read
        for t, step, epoch, table in pending:
            n = table.shape[0] if table is not None else 0
            skew, rows = _skew_summary(rows[:n]), rows[n:]
            record = records[t]
            if "skipped" in record:  # non-finite inputs: the device kept the old masks
                continue
            data = {"itop": record["itop"], "changed": dict(record.get("changed", {})),
                    "drop_fraction": record["drop_fraction"], "fan_in_cv": record["fan_in_cv"], **skew}
            self.history.topology.append({"step": step, "epoch": epoch, **data})
            self._emit("topology", data, step=step, epoch=epoch)

    def _accumulate(self, loss, correct) -> None:
        """Add one step's loss and correct count to the epoch's and the logging window's sums (in place)."""
        self._loss_sum.add_(loss)
        self._correct.add_(correct)
        self._win_loss.add_(loss)

    def _train_step(self, batch) -> None:
        """One step. ``batch``: the loader's position (int) under CUDA graphs, which build the batch themselves;
        else an (x, y) pair."""
        update_next = self.dst is not None and self.dst.schedule.is_update(self.dst.t + 1)
        snapshot = update_next and self.config.skew_every == "update"
        self._write_lr(self.lr_schedule.lr_at(self.step))
        if self._graph is not None:
            skew = self._graph.step(batch, eager=update_next, snapshot=snapshot)
            n = self.train_loader.batch_size  # the train loader drops its last partial batch
        else:
            x, y = batch
            loss, correct, skew = self._core_step(x, y, snapshot)
            self._accumulate(loss, correct)
            self.optimizer.zero_grad(set_to_none=True)
            n = y.shape[0]
        changed = self.dst.step() if self.dst is not None else False
        self.step += 1
        self._seen += n
        self._batches += 1
        self._win_n += 1
        self._win_images += n
        if changed:
            self._topology_pending.append((self.dst.t, self.step, self.epoch, skew))
            if not self.dst.defer_checks:
                self._flush_topology()

    # ----- accumulators -----------------------------------------------------------------------------------
    def _zeros(self):
        return torch.zeros((), device=self.device), torch.zeros((), device=self.device, dtype=torch.long)

    def _reset_epoch_accumulators(self) -> None:
        self._loss_sum.zero_()
        self._correct.zero_()
        self._seen, self._batches, self._epoch_time = 0, 0, 0.0

    def _reset_window(self) -> None:
        self._win_loss.zero_()
        self._win_n, self._win_images = 0, 0
        self._win_t0 = time.perf_counter()

    def _log_step(self) -> bool:
        """Emit a "step" event (the one host sync of a logging step); returns False on a non-finite loss."""
        self._flush_topology()
        loss = float(self._win_loss) / max(1, self._win_n)  # host sync
        now = time.perf_counter()
        data = {"loss": loss, "lr": self.lr_schedule.lr_at(self.step - 1),
                "images_per_s": self._win_images / max(now - self._win_t0, 1e-9)}
        self.history.step_log.append({"step": self.step, "epoch": self.epoch, **data})
        self._reset_window()
        if not math.isfinite(loss):
            return False
        self._emit("step", data)
        return True

    # ----- evaluation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Test loss and accuracy (BN in eval mode), one host sync."""
        self.model.eval()
        loss_sum, correct = self._zeros()
        n = 0
        self.test_loader.set_epoch(0)
        for x, y in self.test_loader:
            with self._autocast():
                out = self.forward_model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            n += y.shape[0]
        self.model.train()
        total, right = torch.stack([loss_sum.double(), correct.double()]).tolist()
        return {"test_loss": total / max(1, n), "test_acc": right / max(1, n)}

    def _end_epoch(self) -> bool:
        """Close the epoch: test, "epoch" event, checkpoint. Returns False on a non-finite train loss."""
        self._flush_topology()
        loss_sum, correct = torch.stack([self._loss_sum.double(), self._correct.double()]).tolist()
        self._epoch_time += time.perf_counter() - self._epoch_t0
        self.epoch += 1
        row = {"epoch": self.epoch, "train_loss": loss_sum / max(1, self._batches),
               "train_acc": correct / max(1, self._seen), "test_loss": None, "test_acc": None,
               "time_s": self._epoch_time, "images_per_s": self._seen / max(self._epoch_time, 1e-9)}
        if not math.isfinite(row["train_loss"]):
            return False
        if self.epoch % self.config.eval_every_epochs == 0 or self.step >= self.total_steps:
            row.update(self.evaluate())
        self.history.add_epoch(row)
        self._reset_epoch_accumulators()
        self._emit("epoch", row)
        if self.config.run_dir and self.epoch % self.config.checkpoint_every_epochs == 0:
            self.save_checkpoint()
        self._write_progress()
        return True

    # ----- the loop ---------------------------------------------------------------------------------------
    def run(self) -> History:
        """Train until ``total_steps`` (or a stop, a NaN, Ctrl-C); returns the History (``history.reason``)."""
        for _ in self.iterate():
            pass
        return self.history

    def iterate(self):
        """``run()`` one step at a time: a generator that yields after every training step.

        For drivers that interleave several runs on one GPU (``concurrent.py``); ``history`` is complete once it
        is exhausted.
        """
        cfg = self.config
        self._stop_reason = None
        self.history.reason = None
        self._emit("start", {"config": cfg.to_dict(), "device": str(self.device),
                             "params": sum(p.numel() for p in self.model.parameters()),
                             "sparsity": self.masks.sparsity() if self.masks is not None else 0.0,
                             "features": dict(self.features), "total_steps": self.total_steps,
                             "resumed_at_step": self.step if self.resumed_from else None})
        self._lock_run()
        bar = self._progress_bar()
        reason = None
        write_error = None
        t_start = time.perf_counter()
        try:
            self._write_progress()  # config.json now: a run killed before its end can still be resumed
            if self._stop.is_set():
                reason = "stopped"
            while reason is None and self.step < self.total_steps:
                self._epoch_t0 = time.perf_counter()
                if self._win_n == 0:
                    self._win_t0 = self._epoch_t0
                # under CUDA graphs the step builds its batch inside the graph: the loop hands it positions
                batches = self.train_loader.positions() if self._graph is not None else iter(self.train_loader)
                while True:
                    batch = next(batches, None)
                    if batch is None:
                        break
                    self._apply_requests()
                    self._train_step(batch)
                    logged = self._log_step() if self.step % cfg.log_every == 0 else True
                    yield self.step
                    if bar is not None:
                        bar.update(1)
                    if not logged:
                        reason = "nan"
                        break
                    if self.step % cfg.log_every == 0:
                        if bar is not None:
                            bar.set_postfix(loss=f"{self.history.step_log[-1]['loss']:.4f}")
                    if self.step >= self.total_steps or self._stop.is_set():
                        break
                if reason is None:
                    if self.train_loader.position >= self.steps_per_epoch or self.step >= self.total_steps:
                        if not self._end_epoch():
                            reason = "nan"
                    else:  # stopped mid-epoch: the checkpoint keeps the partial epoch's sums and time
                        self._epoch_time += time.perf_counter() - self._epoch_t0
                if reason is None and self._stop.is_set() and self.step < self.total_steps:
                    reason = "stopped"
            if reason is None:
                reason = "done"
            if reason in ("done", "stopped") and cfg.run_dir:
                self.save_checkpoint()
        except KeyboardInterrupt:
            reason = "interrupted"  # state may be mid-step: keep the last checkpoint as it is
        except RunWriteError as e:  # e.g. a full disk: the previous checkpoint is kept; stop and say so
            reason, write_error = "write_error", e
        finally:
            if bar is not None:
                bar.close()
        self._flush_topology()
        self.history.reason = reason
        self.history.meta["wall_s"] = self.history.meta.get("wall_s", 0.0) + time.perf_counter() - t_start
        self.history.meta["device"] = str(self.device)
        self.history.meta["device_name"] = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                                            else "cpu")
        self.history.meta["features"] = dict(self.features)
        try:
            if cfg.run_dir and self.is_main:
                write_records(cfg.run_dir, cfg, self.history)
        except RunWriteError as e:
            write_error = write_error or e
        finally:
            self.release()
        self._stop.clear()
        self._emit("end", {"reason": reason, "history": self.history})
        if write_error is not None:
            raise RunWriteError(write_error.path, f"{write_error.why}. The run stopped at step {self.step}; the files "
                                "already written are kept (checkpoint.pt of the last saved epoch): make room, then "
                                "resume it", write_error.errno) from write_error

    def _progress_bar(self):
        show = self.config.progress
        if show == "auto":
            show = sys.stdout.isatty() and self.total_steps >= 200
        if not show:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True, leave=False)

    # ----- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        self._flush_topology()  # the history and the DST records must be complete
        return {
            "version": 1,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "masks": self.masks.state_dict() if self.masks is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "dst": self.dst.state_dict() if self.dst is not None else None,
            "train_loader": self.train_loader.state_dict(),
            "loop": {"step": self.step, "epoch": self.epoch, "loss_sum": self._loss_sum.cpu(),
                     "correct": self._correct.cpu(), "seen": self._seen, "batches": self._batches,
                     "epoch_time": self._epoch_time, "win_loss": self._win_loss.cpu(), "win_n": self._win_n,
                     "win_images": self._win_images},
            "history": self.history.to_dict(),
            "rng": ckpt.rng_state(),
        }

    def save_checkpoint(self, path=None) -> str:
        path = path or os.path.join(self.config.run_dir, CHECKPOINT)
        if self.is_main:  # ranks hold identical weights, masks and optimizer state
            ckpt.save(self.state_dict(), path)
        return path

    def load_checkpoint(self, path) -> None:
        """Continue from a checkpoint written by this configuration's run (refused, naming the fields, if not)."""
        state = ckpt.load(path)
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
        if missing:
            raise ValueError(f"checkpoint {path} lacks {', '.join(map(repr, missing))}: it was not written by "
                             "Trainer.save_checkpoint (or was edited). It was left untouched; start a new run "
                             "under another --name.")
        saved = state["config"] if isinstance(state["config"], dict) else {}
        diffs = config_differences(saved, self.config)
        if diffs:
            raise ValueError(f"checkpoint {path} belongs to another run: {'; '.join(diffs)}. Resume it with its "
                             "own settings (sparseopt-edu train --name NAME --resume, no other flags), or start a "
                             "new run under another --name.")
        loop = state["loop"]
        step = loop.get("step") if isinstance(loop, dict) else None
        if isinstance(step, int) and step > self.total_steps:
            raise ValueError(f"checkpoint {path} is at step {step} (epoch {loop.get('epoch')}), beyond this "
                             f"config's end at step {self.total_steps} (epochs={self.config.epochs}, "
                             f"steps={self.config.steps}): a run cannot be shortened. Resume without --epochs/--steps, "
                             "or with a larger value to extend it.")
        try:
            self._load_state(state)
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise ValueError(
                f"checkpoint {path} does not fit this run ({type(e).__name__}: {first}); "
                "was it written for another configuration? Resume with the run's own config.json "
                "(sparseopt-edu train --name NAME --resume)."
            ) from e
        length = {k: saved.get(k) for k in LENGTH_FIELDS}
        now = {k: getattr(self.config, k) for k in LENGTH_FIELDS}
        if length != now:  # an extended (or re-planned) run says so in its record
            self.history.meta.setdefault("length_changes", []).append(
                {"at_step": self.step, "at_epoch": self.epoch, "from": length, "to": now})
        self.resumed_from = os.fspath(path)

    def _load_state(self, state: dict) -> None:
        if self.masks is not None:
            self.masks.load_state_dict(state["masks"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # CUDA graphs read the LR from a device tensor, eager a float
            lr = float(group["lr"])
            group["lr"] = torch.tensor(lr, device=self.device) if self.features["cuda_graphs"] else lr
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        if self.dst is not None:
            self.dst.load_state_dict(state["dst"])
            self._records_done = len(self.dst.updates)
        self.train_loader.load_state_dict(state["train_loader"])
        loop = state["loop"]
        self.step, self.epoch = loop["step"], loop["epoch"]
        self._loss_sum.copy_(loop["loss_sum"])  # in place: a captured graph adds into these tensors
        self._correct.copy_(loop["correct"])
        self._seen, self._batches, self._epoch_time = loop["seen"], loop["batches"], loop["epoch_time"]
        self._win_loss.copy_(loop["win_loss"])
        self._win_n, self._win_images = loop["win_n"], loop["win_images"]
        self._win_t0 = time.perf_counter()
        self.history = History.from_dict(state["history"])
        self.history.config = self.config.to_dict()
        ckpt.set_rng_state(state["rng"])

    @classmethod
    def resume(cls, run_dir, callbacks=(), **overrides) -> Trainer:
        """A Trainer that continues the run in ``run_dir`` (its config.json and checkpoint.pt).

        ``overrides`` may change how it runs (``HOW_FIELDS``: device, progress, ...) and its length (``epochs``,
        ``steps``: extend it, recorded in ``history.meta["length_changes"]``); any other field that differs from
        the run's config is refused. Without config.json (a run killed by an older version) the checkpoint's
        config is used; without a checkpoint (killed before its first one) the run starts again from step 0
        (``resumed_from`` stays None).
        """
        run_dir = os.fspath(run_dir)
        path, ckpt_path = os.path.join(run_dir, CONFIG), os.path.join(run_dir, CHECKPOINT)
        if os.path.isfile(path):
            saved = TrainConfig.from_json(path)
        elif os.path.isfile(ckpt_path):
            saved = TrainConfig.from_dict(ckpt.load(ckpt_path)["config"])
        else:
            raise FileNotFoundError(f"nothing to resume in {run_dir}: no {CONFIG} and no {CHECKPOINT} (start the run "
                                    "without --resume)")
        cfg = saved.replace(**{**overrides, "run_dir": run_dir, "resume": False})
        diffs = config_differences(saved.to_dict(), cfg)
        if diffs:
            raise ValueError(f"resume continues {run_dir} as its {CONFIG} says; these settings differ from it: "
                             f"{'; '.join(diffs)}. Drop them (and --config) to resume, or start a new run under "
                             "another --name.")
        trainer = cls(cfg, callbacks)
        if os.path.isfile(ckpt_path):
            try:
                trainer.load_checkpoint(ckpt_path)
            except BaseException:
                trainer.release()
                raise
        trainer.config = cfg.replace(resume=True)
        return trainer


def _skew_summary(rows: list[list[float]]) -> dict:
    """The layer-averaged skew metrics from a skew table's rows (``Trainer._skew_snapshot``); None where no layer
    qualifies (no table, or no layer with 3 distinct densities for a slope)."""
    fits = [(r[0], r[1]) for r in rows if r[2] >= 3 and math.isfinite(r[0]) and math.isfinite(r[1])]
    angles = [r[3] for r in rows if math.isfinite(r[3])]
    return {
        "slope_raw": float(np.mean([f[0] for f in fits])) if fits else None,
        "slope_corrected": float(np.mean([f[1] for f in fits])) if fits else None,
        "rotation_deg": float(np.mean(angles)) if angles else None,
    }


def train(config: TrainConfig | dict, callbacks=()) -> History:
    """Build a :class:`Trainer` and run it: ``history = train(TrainConfig(...))``."""
    return Trainer(config, callbacks).run()
