"""The flat layout behind batched topology updates: segmented ranking and sums equal their per-layer versions."""
import pytest
import torch
from torch import nn

from sparseopt_edu.sparse import sparsify
from sparseopt_edu.sparse.flat import FlatLayout, memory_order


def layers(channels_last: bool):
    torch.manual_seed(0)
    ws = [torch.randn(8, 3, 3, 3), torch.randn(16, 8, 3, 3), torch.randn(10, 16), torch.randn(4, 1, 5, 5)]
    if channels_last:
        ws = [w.contiguous(memory_format=torch.channels_last) if w.dim() == 4 else w for w in ws]
    return ws


@pytest.mark.parametrize("channels_last", [False, True])
def test_gather_split_scatter_round_trip_in_memory_order(channels_last):
    ws = layers(channels_last)
    layout = FlatLayout(ws)
    flat = layout.gather(ws)
    assert flat.numel() == sum(w.numel() for w in ws) == layout.numel
    for w, view in zip(ws, layout.split(flat)):
        assert torch.equal(view, w) and view.stride() == w.stride()  # same logical values, same memory format
    out = [torch.zeros_like(w) for w in ws]
    layout.scatter_(out, flat)
    assert all(torch.equal(a, b) for a, b in zip(out, ws))
    if channels_last:
        assert memory_order(ws[1]) == (0, 2, 3, 1)
        # the flat block of a channels_last weight is its raw storage: channels vary fastest
        assert torch.equal(flat[layout.sizes[0]: layout.sizes[0] + 8], ws[1][0, :, 0, 0])


@pytest.mark.parametrize("channels_last", [False, True])
def test_top_per_layer_equals_per_layer_topk(channels_last):
    ws = layers(channels_last)
    layout = FlatLayout(ws)
    score = layout.gather(ws)
    score[::7] = float("-inf")  # excluded entries, as inactive ones are
    count = torch.tensor([5.0, 100.0, 0.0, 33.0])
    top = layout.top_per_layer(score, count)
    for i, (chunk, sel) in enumerate(zip(score.split(layout.sizes), top.split(layout.sizes))):
        expect = torch.zeros_like(sel)
        expect[torch.topk(chunk, int(count[i])).indices] = True
        assert torch.equal(sel, expect)
        assert int(sel.sum()) == int(count[i])


def test_row_and_layer_sums_density_ratio_and_fan_in_cv():
    ws = layers(True)
    layout = FlatLayout(ws)
    gen = torch.Generator().manual_seed(1)
    masks = [torch.rand(w.shape, generator=gen) < 0.3 for w in ws]
    masks[1][3] = False  # an empty neuron: ratio 0 and not counted as active
    flat = layout.gather(masks)
    rows = layout.row_sum(flat)
    assert layout.layer_sum(flat).tolist() == [float(m.sum()) for m in masks]
    per_layer_rows = [m.flatten(1).sum(1) for m in masks]
    assert torch.equal(rows, torch.cat(per_layer_rows).double())
    # per layer, from the integer counts: d_i / d_mean = live_i * n_active / sum(live)
    expected_ratio = torch.cat([r.double() * (r > 0).sum().double() / r.sum().clamp_min(1).double()
                                for r in per_layer_rows])
    assert torch.equal(layout.density_ratio(rows), expected_ratio)  # bit for bit
    cv = torch.stack([r.double().std() / r.double().mean() for r in per_layer_rows]).mean()
    assert float(layout.fan_in_cv(rows)) == pytest.approx(float(cv), rel=1e-12)


def test_apply_flat_keeps_counts_zeroes_state_and_refreshes_scales():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 10))
    model = model.to(memory_format=torch.channels_last)
    masks = sparsify(model, 0.8, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masks.register_optimizer(opt)
    for p in model.parameters():
        opt.state[p]["momentum_buffer"] = torch.ones_like(p)
    layout = masks.layout()
    old = layout.gather([m for _, m in masks.items()])
    new = old.clone()
    live = old.nonzero().flatten()
    dead = (~old).nonzero().flatten()
    new[live[:10]] = False  # move 10 connections: counts stay
    new[dead[:10]] = True
    before = {n: masks.live_count(n) for n in masks}
    masks.apply_flat(new, old)
    assert {n: masks.live_count(n) for n in masks} == before
    assert torch.equal(layout.gather([m for _, m in masks.items()]), new)
    for name, module in masks.modules.items():
        mask = module.weight_mask
        assert float((module.weight.detach() * ~mask).abs().max()) == 0.0
        buf = opt.state[module.weight]["momentum_buffer"]
        assert torch.equal(buf, (mask & layout.split(old)[list(masks).index(name)]).float())  # kept: 1, rest 0
        assert torch.equal(module.weight_grad_mask, mask.float())
        scale = masks.neuron_scale(name).view(-1, *([1] * (mask.dim() - 1)))
        assert torch.equal(module.weight_grad_scale, mask.float() * scale)


def test_apply_masks_on_one_layer_with_its_count_keeps_the_others():
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    masks = sparsify(model, 0.5, "uniform", seed=0)
    before = {n: masks.live_count(n) for n in masks}
    new = masks["0"].clone()
    on, off = new.nonzero()[0], (~new).nonzero()[0]
    new[tuple(on)], new[tuple(off)] = False, True
    masks.apply_masks({"0": new}, counts={"0": before["0"]})
    assert {n: masks.live_count(n) for n in masks} == before
    assert torch.equal(masks["0"], new)


def test_warm_state_policy_starts_grown_adam_entries_at_the_layer_mean():
    model = nn.Sequential(nn.Linear(12, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False))
    masks = sparsify(model, 0.5, "uniform", seed=0, state_policy="warm")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    masks.attach(opt)
    model(torch.randn(16, 12)).sum().backward()
    opt.step()
    w = model[0].weight
    old = masks["0"].clone()
    v_before = opt.state[w]["exp_avg_sq"].clone()
    new = old.clone()
    on, off = old.flatten().nonzero().flatten(), (~old).flatten().nonzero().flatten()
    new.view(-1)[on[:3]] = False
    new.view(-1)[off[:3]] = True
    masks.apply_masks({"0": new}, counts={"0": masks.live_count("0")})
    keep, grown = old & new, new & ~old
    v = opt.state[w]["exp_avg_sq"]
    assert torch.equal(v[keep], v_before[keep])  # survivors keep their state
    assert torch.allclose(v[grown], v_before[keep].mean().expand(3))  # grown: the mean over survivors
    assert float(v[~new].abs().max()) == 0.0  # dropped and never-live entries: 0
    assert float(opt.state[w]["exp_avg"][~keep].abs().max()) == 0.0  # first moment: zero policy for all
