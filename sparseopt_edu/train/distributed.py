"""Data-parallel training under ``torchrun``: DistributedDataParallel, nothing home-made.

Launched as ``torchrun --nproc_per_node=N -m sparseopt_edu.cli train ...`` (or ``sparseopt-edu train`` under
torchrun), every rank builds the same model, masks and DST from the same seed. Our choices:
- DDP averages gradients during backward; SparseOpt's mask x correction multiply and RigL's raw-gradient
  snapshot run after that, on identical gradients, so every rank makes the same topology decision (random
  choices come from a generator seeded by (seed, step)); after each update the ranks compare mask
  checksums and stop with a clear error if they differ (``dst.core.check_ranks_agree``).
- ``broadcast_buffers=False``: DDP would otherwise send every ``weight_mask`` buffer from rank 0 on every forward.
- BatchNorm statistics: ``SyncBatchNorm`` on CUDA (``sync_bn="auto"``), per-rank statistics on CPU (gloo), where
  SyncBatchNorm does not run; each rank then normalises its own micro-batch.
- Each rank reads a disjoint shard of the training set (rank::world, equal lengths), batch_size is per rank.
- Ranks are global (``RANK``: data shard, rank 0 writes); ``LOCAL_RANK`` picks the GPU on a node, so several
  nodes (``torchrun --nnodes N --node_rank K``) work like one.
- Logging, events, records and checkpoints on rank 0 only. CUDA graphs are off under DDP (eager steps).
- Gradients are all-reduced in fp32 by default; ``ddp_grad_dtype="bf16"`` compresses them (DDP's bf16 hook).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env(device_type: str) -> DistInfo | None:
    """Join the process group torchrun describes in the environment (None when not launched by torchrun)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), backend)


def shard(data, info: DistInfo):
    """This rank's disjoint share of the training set (the test set stays whole).

    Every share has the same length: the last ``len(data) % world_size`` images are left out (as
    DistributedSampler(drop_last=True) does). With unequal shares the ranks could count different steps per epoch
    (1,437 digits on 4 ranks at batch 8: 45 vs 44), hence different run lengths, LR schedules and DST schedules,
    and the first topology update stopped with MaskDisagreement (or a rank waited in a collective alone).
    """
    n = len(data) // info.world_size * info.world_size
    if n == 0:
        raise ValueError(f"the training set has {len(data)} images, fewer than the {info.world_size} ranks: raise "
                         "n_train or use fewer processes")
    return dataclasses.replace(data, train_x=data.train_x[info.rank : n : info.world_size],
                               train_y=data.train_y[info.rank : n : info.world_size])


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device, sync_bn: bool,
         grad_dtype: str = "fp32") -> torch.nn.Module:
    """DDP around ``model``; ``grad_dtype="bf16"`` all-reduces compressed gradients (half the bytes; every rank
    still receives the same averaged gradient, so masks keep agreeing)."""
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False,
                                                    gradient_as_bucket_view=True)
    if grad_dtype == "bf16":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        ddp.register_comm_hook(None, default_hooks.bf16_compress_hook)
    return ddp


def shutdown(barrier: bool = True) -> None:
    """Leave the process group; ranks first wait for each other (gloo aborts if torn down mid-collective)."""
    if dist.is_available() and dist.is_initialized():
        if barrier:
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
        else:
            dist.destroy_process_group()
