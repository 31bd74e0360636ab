"""Two CPU processes (gloo) train with DDP + RigL + SparseOpt: ranks must agree after every topology update.

Equality with one process at the same global batch holds only without batch statistics (BN normalises per
rank): it is asserted on a GroupNorm model, and on the BN model against one process that normalises per
micro-batch.
"""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from sparseopt_edu import RigL, SparseOpt, sparsify

WORLD, GLOBAL_BATCH, STEPS, DELTA_T = 2, 16, 240, 10


def make_model(norm: str) -> nn.Module:
    def n(c):
        return nn.BatchNorm2d(c) if norm == "bn" else nn.GroupNorm(4, c)

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), n(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), n(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def batches():
    gen = torch.Generator().manual_seed(123)
    for _ in range(STEPS):
        yield torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=gen), torch.randint(0, 10, (GLOBAL_BATCH,), generator=gen)


def build(norm):
    torch.manual_seed(0)
    model = make_model(norm)
    masks = sparsify(model, 0.9, "erk", seed=0)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True), masks)
    dst = RigL(masks, opt, delta_t=DELTA_T, alpha=0.3, t_end=200, seed=0)
    return model, masks, opt, dst


def flat_state(model, masks, opt) -> torch.Tensor:
    """Masks, parameters and optimizer state in one vector (for cross-rank equality).

    BN running statistics are left out: each rank normalises and tracks statistics on its own micro-batch
    (our documented per-rank choice on CPU; SyncBatchNorm on GPUs).
    """
    parts = [masks.checksums()] + [p.detach().double().flatten() for p in model.parameters()]
    for p in model.parameters():
        parts += [v.double().flatten() for v in opt.state.get(p, {}).values() if torch.is_tensor(v)]
    return torch.cat(parts)


def worker(rank, port, norm, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model, masks, opt, dst = build(norm)
        # Masks agree by construction and are synchronised at topology updates only: no buffer broadcast.
        ddp = DDP(model, broadcast_buffers=False)
        updates = 0
        for x, y in batches():
            xs, ys = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
            loss = nn.functional.cross_entropy(ddp(xs), ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if dst.step():
                updates += 1
                mine = flat_state(model, masks, opt)
                gathered = [torch.zeros_like(mine) for _ in range(WORLD)]
                dist.all_gather(gathered, mine)
                assert all(torch.equal(gathered[0], g) for g in gathered), f"ranks differ after update {dst.t}"
        if rank == 0:
            torch.save({"params": {k: v for k, v in model.named_parameters()},
                        "masks": masks.state_dict()["masks"], "updates": updates}, out)
        dist.barrier()  # leave together: a rank tearing gloo down while the other still works can abort
    finally:
        dist.destroy_process_group()


def single_process(norm):
    """One process, same global batches; BN normalises per micro-batch, as each rank does.

    One thread, like the workers: the topology is chaotic in float rounding (a different thread count changes
    the masks after two updates), so the reference must compute bit for bit like the ranks.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _single_process(norm)
    finally:
        torch.set_num_threads(threads)


def _single_process(norm):
    model, masks, opt, dst = build(norm)
    for x, y in batches():
        opt.zero_grad()
        for xs, ys in zip(x.chunk(WORLD), y.chunk(WORLD)):
            (nn.functional.cross_entropy(model(xs), ys) / WORLD).backward()
        opt.step()
        dst.step()
    return model, masks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("norm", ["gn", "bn"])
def test_two_ranks_agree_and_match_single_process(norm, tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(worker, args=(free_port(), norm, str(out)), nprocs=WORLD, join=True)
    result = torch.load(out, weights_only=False)
    assert result["updates"] >= 15  # updates at 10, 20, ..., 190 (late ones may drop nothing)
    model, masks = single_process(norm)
    for name, mask in result["masks"].items():
        assert torch.equal(mask, masks[name]), f"mask {name} differs from the single-process run"
    for name, p in model.named_parameters():
        assert torch.allclose(result["params"][name], p, atol=1e-6, rtol=1e-5), name


def disagreeing_worker(rank, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        from sparseopt_edu import SET

        torch.manual_seed(0)
        model = make_model("gn")
        masks = sparsify(model, 0.9, "erk", seed=0)
        ddp = DDP(model, broadcast_buffers=False)
        opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.05), masks)
        dst = SET(masks, opt, delta_t=2, t_end=100, seed=rank)  # the bug: a rank-dependent DST seed
        for x, y in batches():
            nn.functional.cross_entropy(ddp(x.chunk(WORLD)[rank]), y.chunk(WORLD)[rank]).backward()
            opt.step()
            opt.zero_grad()
            dst.step()
    finally:
        dist.destroy_process_group()


def test_rank_disagreement_stops_with_clear_error():
    with pytest.raises(Exception, match="differs from other ranks"):
        mp.spawn(disagreeing_worker, args=(free_port(),), nprocs=WORLD, join=True)


@pytest.mark.parametrize("world", [2, 3, 4, 8])
def test_shards_are_disjoint_and_equally_long(world):
    """Unequal shares gave ranks different steps per epoch (1,437 digits, 4 ranks, batch 8: 45 vs 44), so different
    LR and DST schedules: the first topology update stopped with MaskDisagreement (measured under torchrun)."""
    from sparseopt_edu.data.images import ImageData
    from sparseopt_edu.train import distributed

    for n in (1437, 31, 2 * world + 1, world):
        data = ImageData.from_splits("t", torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n),
                                     torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), n)
        shards = [distributed.shard(data, distributed.DistInfo(r, world, 0, "gloo")) for r in range(world)]
        assert {len(s) for s in shards} == {n // world}, (n, [len(s) for s in shards])
        seen = torch.cat([s.train_y for s in shards])
        assert seen.unique().numel() == seen.numel() == n // world * world  # disjoint, only the remainder left out
        for batch in (8, n // world):
            assert len({len(s.loader("train", batch)) for s in shards}) == 1
