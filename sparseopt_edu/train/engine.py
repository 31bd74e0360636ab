"""The training loop: builds a run from a :class:`TrainConfig` (``build.py``), steps it, tells subscribers.

One step (``step.py``: the function the eager loop calls and the CUDA graph captures): LR for this step ->
zero grads -> forward (bf16 autocast + channels_last on CUDA only) -> backward -> on topology-update steps a copy
of the raw gradient -> ``optimizer.step()`` (SparseOpt with the correction on, SparseOpt(enabled=False) for the
exact masked baseline, the plain optimizer for ``method="dense"``) -> sums. Then, in the loop, ``dst.step()``.
Comparisons between the baseline and SparseOpt therefore differ in one switch.

No host sync per step: the loss and the correct count are summed into device tensors (in place, inside the CUDA
graph on CUDA) and read only every ``log_every`` steps and at the end of an epoch. Topology updates read their
checks and diagnostics at once on a CPU; on CUDA they read nothing (``DynamicSparsity.defer_checks``) and their
"topology" events follow at the next logging step or epoch end. A NaN loss is therefore noticed at the next
logging step, and the run stops with reason "nan" keeping its last checkpoint.

Subscribers get :class:`Event` objects carrying data; whoever steers a run (a widget, Ctrl-C, a test) calls its
:class:`RunControl` (``trainer.control``: ``stop()``, ``set_lr()``), which the loop reads between steps.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as datasets
from .. import diagnostics
from . import build, distributed
from . import checkpoint as ckpt
from .config import TrainConfig
from .control import RunControl
from .events import Event, History
from .lr_schedule import LRSchedule, write_lr
from .runs import CHECKPOINT, RunLock, RunWriteError, check_writable, clean_temp, signals_held, write_records
from .step import LoopCounts, StepSums, autocast, make_train_step

resolve_device = build.resolve_device  # the name other modules import from here


class Trainer:
    """Builds data, model, masks, optimizer and DST from a :class:`TrainConfig`, and runs the loop.

    Attributes: ``model``, ``masks`` (None for dense), ``optimizer`` (SparseOpt, or the torch optimizer for
    dense), ``dst`` (None for dense), ``history``, ``step`` (optimizer steps done), ``epoch`` (epochs done),
    ``device``, ``features`` (the resolved amp/channels_last/compile/cuda_graphs switches), ``control`` (the
    thread-safe handle that stops the run or changes its LR; pass one to share it between runs).
    """

    def __init__(self, config: TrainConfig | dict, callbacks=(), control: RunControl | None = None):
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        config.validate()
        self.config = cfg = config
        self.control = control if control is not None else RunControl()
        self._owns_control = control is None
        self.device = build.resolve_device(cfg.device)
        self.dist = distributed.from_env(self.device.type)
        if self.dist is not None and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.is_main = self.dist is None or self.dist.is_main
        self._run_lock = None
        if cfg.run_dir and self.is_main:  # before any work: a read-only folder fails now, not after training
            check_writable(cfg.run_dir)
        self.callbacks = list(callbacks) if self.is_main else []  # events, logs and records on rank 0 only
        self.features = build.features(cfg, self.device, self.dist)
        if self.device.type == "cuda":  # fixed shapes: let cuDNN time its algorithms once (process-wide)
            torch.backends.cudnn.benchmark = True

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.data = datasets.load_for_run(cfg.dataset, root=cfg.data_root, download=cfg.download,
                                          n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                                          data_kwargs=cfg.data_kwargs)
        if self.dist is not None:
            self.data = distributed.shard(self.data, self.dist)
        self.model, self.masks = build.model_and_masks(cfg, self.data, self.device, self.features)
        self.forward_model, self.loss_fn = build.forward_functions(self.model, cfg, self.features, self.dist,
                                                                   self.device)
        memory_format = torch.channels_last if self.features["channels_last"] else torch.contiguous_format
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
        self.optimizer = build.optimizer(cfg, self.model, self.masks, self.device, self.features["cuda_graphs"])
        self.lr_schedule = LRSchedule(cfg.schedule, cfg.lr, self.total_steps, cfg.warmup_steps)
        self.dst = build.dynamic_sparsity(cfg, self.masks, self.optimizer, self.total_steps, self.device)

        # the one training step, and what it adds into (in place: a captured graph adds into these tensors)
        self.sums, self.counts = StepSums(self.device), LoopCounts()
        self.train_step = make_train_step(
            self.loss_fn, self.optimizer, self.sums,
            gradient_copy=self._gradient_copy if self.dst is not None else None,
            clip_params=list(self.model.parameters()) if self.masks is None else None,
            max_grad_norm=cfg.max_grad_norm if self.masks is None else None,
            grads_to_none=self.features["cuda_graphs"])
        self._graph = None
        if self.features["cuda_graphs"]:
            from .graphs import CapturedStep

            self._graph = CapturedStep(self.train_step, self.train_loader.batch_at, self.device)
        self._topology_pending: list[tuple] = []  # (DST step, trainer step, epoch, skew table) not yet emitted
        self._records_done = 0  # DST records already turned into events

        self.history = History()
        self.history.config = cfg.to_dict()
        self.step = 0
        self.epoch = 0
        self.resumed_from: str | None = None
        self._lock_run()
        if cfg.resume and os.path.isfile(os.path.join(cfg.run_dir, CHECKPOINT)):
            try:
                self.load_checkpoint(os.path.join(cfg.run_dir, CHECKPOINT))
            except BaseException:
                self.release()
                raise

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
        cfg, control = self.config, self.control
        bar, t_start = self._begin()
        reason = write_error = None
        try:
            if control.stop_requested:
                reason = "stopped"
            while reason is None and self.step < self.total_steps:
                epoch_t0 = time.perf_counter()
                if self.counts.win_n == 0:
                    self.counts.win_t0 = epoch_t0
                for batch in self._batches():  # the rest of this epoch
                    self._train_step(batch)
                    if self.step % cfg.log_every == 0 and not self._log_step(bar):
                        reason = "nan"
                    if bar is not None:
                        bar.update(1)
                    yield self.step
                    if reason or self.step >= self.total_steps or control.stop_requested:
                        break
                self.counts.epoch_time += time.perf_counter() - epoch_t0
                epoch_done = self.train_loader.position >= self.steps_per_epoch or self.step >= self.total_steps
                if reason is None and epoch_done and not self._end_epoch():
                    reason = "nan"  # (a stop mid-epoch keeps the partial epoch's sums and time for a resume)
                if reason is None and control.stop_requested and self.step < self.total_steps:
                    reason = "stopped"
            reason = reason or "done"
            if reason in ("done", "stopped") and cfg.run_dir:
                self.save_checkpoint()
        except KeyboardInterrupt:
            reason = "interrupted"  # state may be mid-step: keep the last checkpoint as it is
        except RunWriteError as e:  # e.g. a full disk: the previous checkpoint is kept; stop and say so
            reason, write_error = "write_error", e
        finally:
            if bar is not None:
                bar.close()
        self._finish(reason, write_error, t_start)

    def _batches(self):
        """This epoch's remaining batches: (x, y) pairs, or under CUDA graphs the loader's positions (the graph
        builds its batch itself)."""
        return self.train_loader.positions() if self._graph is not None else iter(self.train_loader)

    def _train_step(self, batch) -> None:
        """One step: this step's LR, the step function (eager, or a graph replay), then the topology update."""
        base_lr = self.control.base_lr()
        if base_lr is not None:
            self.lr_schedule.base_lr = base_lr
        write_lr(self.optimizer, self.lr_schedule.lr_at(self.step))
        update = self._copy_gradient_next()
        if self._graph is not None:
            raw = self._graph(batch, update=update, updates_ahead=self._updates_ahead())
            n = self.train_loader.batch_size  # the train loader drops its last partial batch
        else:
            raw = self.train_step(*batch, update=update)
            n = batch[1].shape[0]
        skew = None
        if raw is not None:
            self.dst.use_gradient_snapshot(raw, self.dst.t + 1)
            if self.config.skew_every == "update":
                skew = diagnostics.skew_table(self.masks, raw)
        changed = self.dst.step() if self.dst is not None else False
        self.step += 1
        self.counts.add(n)
        if changed:
            self._topology_pending.append((self.dst.t, self.step, self.epoch, skew))
            if not self.dst.defer_checks:
                self._flush_topology()

    def _copy_gradient_next(self) -> bool:
        """Whether the next step copies its raw gradient: a topology update comes after it, and the method
        grows from gradients or the skew metrics are recorded."""
        if self.dst is None or not self.dst.schedule.is_update(self.dst.t + 1):
            return False
        return self.dst.needs_gradient or self.config.skew_every == "update"

    def _updates_ahead(self) -> bool:
        return self.dst is not None and self.dst.t + 1 < self.dst.schedule.t_end

    def _gradient_copy(self) -> torch.Tensor:
        """Inside the step, after backward: the DST's snapshot of the raw dense gradient of every masked layer, in
        the masks' flat layout (its own pre-mask hook then sees it taken and does not copy again)."""
        self.dst.take_gradient_snapshot(self.dst.t + 1)
        return self.dst.gradient_snapshot

    # ----- start and end of a run -------------------------------------------------------------------------
    def _begin(self):
        self.history.reason = None
        self._emit("start", {"config": self.config.to_dict(), "device": str(self.device),
                             "params": sum(p.numel() for p in self.model.parameters()),
                             "sparsity": self.masks.sparsity() if self.masks is not None else 0.0,
                             "features": dict(self.features), "total_steps": self.total_steps,
                             "resumed_at_step": self.step if self.resumed_from else None})
        self._lock_run()
        bar = self._progress_bar()
        self._write_progress()  # config.json now: a run killed before its end can still be resumed
        return bar, time.perf_counter()

    def _finish(self, reason: str, write_error, t_start: float) -> None:
        self._flush_topology()
        meta = self.history.meta
        self.history.reason = reason
        meta["wall_s"] = meta.get("wall_s", 0.0) + time.perf_counter() - t_start
        meta["device"] = str(self.device)
        meta["device_name"] = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        meta["features"] = dict(self.features)
        with signals_held():  # a Ctrl-C or SIGTERM now acts once the records are written and "end" is out
            try:
                if self.config.run_dir and self.is_main:
                    write_records(self.config.run_dir, self.config, self.history)
            except RunWriteError as e:
                write_error = write_error or e
            finally:
                self.release()
            if self._owns_control:
                self.control.clear_stop()  # a later run() continues the run
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

    # ----- control (thread-safe; the same as calling ``trainer.control``) ----------------------------------
    def request_stop(self) -> None:
        """Ask the loop to stop after the current step; it then emits "end" with reason "stopped"."""
        self.control.stop()

    def set_lr(self, lr: float) -> None:
        """Set the base LR from the next step on (the schedule's factor still applies on top of it)."""
        self.control.set_lr(lr)

    # ----- events -----------------------------------------------------------------------------------------
    def _emit(self, kind: str, data: dict, step: int | None = None, epoch: int | None = None) -> None:
        event = Event(kind, self.step if step is None else step, self.epoch if epoch is None else epoch, data,
                      run=self.config.run_dir)
        for fn in self.callbacks:
            fn(event)

    def _flush_topology(self) -> None:
        """Emit the "topology" events of the updates since the last flush (two host reads for all of them; see
        DynamicSparsity.flush)."""
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
            skew, rows = diagnostics.skew_summary(rows[:n]), rows[n:]
            record = records[t]
            if "skipped" in record:  # non-finite inputs: the device kept the old masks
                continue
            data = {"itop": record["itop"], "changed": dict(record.get("changed", {})),
                    "drop_fraction": record["drop_fraction"], "fan_in_cv": record["fan_in_cv"], **skew}
            self.history.topology.append({"step": step, "epoch": epoch, **data})
            self._emit("topology", data, step=step, epoch=epoch)

    def _log_step(self, bar=None) -> bool:
        """Emit a "step" event (the one host sync of a logging step); returns False on a non-finite loss."""
        self._flush_topology()
        c = self.counts
        loss = float(self.sums.window_loss) / max(1, c.win_n)  # host sync
        data = {"loss": loss, "lr": self.lr_schedule.lr_at(self.step - 1),
                "images_per_s": c.win_images / max(time.perf_counter() - c.win_t0, 1e-9)}
        self.history.step_log.append({"step": self.step, "epoch": self.epoch, **data})
        self.sums.window_loss.zero_()
        c.reset_window()
        if not math.isfinite(loss):
            return False
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}")
        self._emit("step", data)
        return True

    def _end_epoch(self) -> bool:
        """Close the epoch: test, "epoch" event, checkpoint. Returns False on a non-finite train loss."""
        self._flush_topology()
        loss_sum, correct = torch.stack([self.sums.loss.double(), self.sums.correct.double()]).tolist()
        c = self.counts
        self.epoch += 1
        row = {"epoch": self.epoch, "train_loss": loss_sum / max(1, c.batches),
               "train_acc": correct / max(1, c.seen), "test_loss": None, "test_acc": None,
               "time_s": c.epoch_time, "images_per_s": c.seen / max(c.epoch_time, 1e-9)}
        if not math.isfinite(row["train_loss"]):
            return False
        if self.epoch % self.config.eval_every_epochs == 0 or self.step >= self.total_steps:
            row.update(self.evaluate())
        self.history.add_epoch(row)
        self.sums.loss.zero_()
        self.sums.correct.zero_()
        c.reset_epoch()
        self._emit("epoch", row)
        if self.config.run_dir and self.epoch % self.config.checkpoint_every_epochs == 0:
            self.save_checkpoint()
        self._write_progress()
        return True

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Test loss and accuracy (BN in eval mode), one host sync."""
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        n = 0
        self.test_loader.set_epoch(0)
        for x, y in self.test_loader:
            with autocast(self.features["amp"]):
                out = self.forward_model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            n += y.shape[0]
        self.model.train()
        total, right = torch.stack([loss_sum.double(), correct.double()]).tolist()
        return {"test_loss": total / max(1, n), "test_acc": right / max(1, n)}

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

    # ----- checkpoints (checkpoint.py) ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        self._flush_topology()  # the history and the DST records must be complete
        return ckpt.trainer_state(self)

    def save_checkpoint(self, path=None) -> str:
        path = path or os.path.join(self.config.run_dir, CHECKPOINT)
        if self.is_main:  # ranks hold identical weights, masks and optimizer state
            ckpt.save(self.state_dict(), path)
        return path

    def load_checkpoint(self, path) -> None:
        """Continue from a checkpoint written by this configuration's run (refused, naming the fields, if not)."""
        ckpt.load_into(self, path)
        if self.dst is not None:
            self._records_done = len(self.dst.updates)

    @classmethod
    def resume(cls, run_dir, callbacks=(), control: RunControl | None = None, **overrides) -> Trainer:
        """A Trainer that continues the run in ``run_dir`` (its config.json and checkpoint.pt).

        ``overrides`` may change how it runs (``checkpoint.HOW_FIELDS``: device, progress, ...) and its length
        (``epochs``, ``steps``: extend it, recorded in ``history.meta["length_changes"]``); any other field that
        differs from the run's config is refused. Without a checkpoint (killed before its first one) the run
        starts again from step 0 (``resumed_from`` stays None).
        """
        cfg, ckpt_path = ckpt.resume_config(run_dir, overrides)
        trainer = cls(cfg, callbacks, control)
        if os.path.isfile(ckpt_path):
            try:
                trainer.load_checkpoint(ckpt_path)
            except BaseException:
                trainer.release()
                raise
        trainer.config = cfg.replace(resume=True)
        return trainer


def train(config: TrainConfig | dict, callbacks=()) -> History:
    """Build a :class:`Trainer` and run it: ``history = train(TrainConfig(...))``."""
    return Trainer(config, callbacks).run()
