"""Issue 14, items 11 and 12: which layers are masked (Conv1d, ConvTranspose2d: a neuron is an output channel),
a warning and the whole-model sparsity for those that cannot be, and masks/DST states that are refused."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from sparseopt_edu import RigL, SparseOpt, sparsify
from sparseopt_edu.dst import SRigL
from sparseopt_edu.sparse.layers import neuron_rows


class Decoder(nn.Module):
    """Conv1d -> ConvTranspose2d (groups 1 and 2) -> Linear, BN after each, as a DST run would see them."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 8, 3, padding=1)
        self.t1 = nn.ConvTranspose2d(2, 6, 3, stride=2, padding=1)  # weight (2, 6, 3, 3): output channels dim 1
        self.t2 = nn.ConvTranspose2d(6, 4, 2, groups=2)  # weight (6, 2, 2, 2)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):  # x: (N, 3, 8)
        h = self.c1(x).relu().reshape(x.shape[0], 2, 4, 8)
        h = self.bn(self.t2(self.t1(h).relu()))
        return self.fc(h.mean((2, 3)))


def manual_output_channel_live(module, mask):
    """Live weights per output channel, written out from the layout (not through neuron_rows)."""
    if isinstance(module, nn.ConvTranspose2d):
        g, (c_in, c_out_g) = module.groups, mask.shape[:2]
        per = mask.view(g, c_in // g, c_out_g, -1).sum((1, 3))  # (groups, C_out/g)
        return per.reshape(-1)
    return mask.flatten(1).sum(1)


@pytest.mark.parametrize("fan_in", ["random", "constant"])
def test_conv1d_and_conv_transpose_are_masked_per_output_channel(fan_in):
    torch.manual_seed(0)
    model = Decoder()
    masks = sparsify(model, 0.6, "erk", fan_in=fan_in, seed=1)
    assert set(masks) == {"c1", "t1", "t2", "fc"}  # old code: only fc (c1, t1, t2 silently dense)
    n = sum(m.weight.numel() for m in (model.c1, model.t1, model.t2, model.fc))
    assert masks.live_count() == round(0.4 * n) and masks.model_sparsity() == pytest.approx(masks.sparsity())
    for name in ("t1", "t2"):
        module = masks.modules[name]
        live = masks.neuron_live(name)
        assert live.shape == (module.out_channels,)
        assert torch.equal(live, manual_output_channel_live(module, masks[name]))
        assert masks.fan_in(name) == {"t1": 2 * 3 * 3, "t2": 3 * 2 * 2}[name]  # C_in/groups x kernel
        if fan_in == "constant":
            assert int(live.max() - live.min()) <= 1  # constant fan-in per output channel
        # SparseOpt's cached factor: mask x sqrt(d_i / d_mean), d_i of the *output channel* of each entry
        d = live.double() / masks.fan_in(name)
        scale = (d / d[live > 0].mean()).sqrt()
        rows = neuron_rows(module, module.weight_grad_scale)
        expected = neuron_rows(module, masks[name]).float() * scale.float()[:, None]
        assert torch.allclose(rows, expected, atol=1e-6)


def test_conv_transpose_invariants_hold_through_rigl_training():
    torch.manual_seed(0)
    model = Decoder()
    masks = sparsify(model, 0.7, seed=2)
    counts = {n: masks.live_count(n) for n in masks}
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), masks)
    dst = RigL(masks, opt, delta_t=2, alpha=0.5, t_end_steps=9, seed=0)
    for _ in range(8):
        opt.zero_grad()
        model(torch.randn(6, 3, 8)).square().mean().backward()
        opt.step()
        dst.step()
    assert len([u for u in dst.updates if u.get("changed")]) >= 2
    assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
    assert {n: masks.live_count(n) for n in masks} == counts
    layout = masks.layout()  # the flat layout's neurons are the output channels too
    flat_live = layout.row_sum(layout.gather([masks[n] for n in masks]))
    assert torch.equal(flat_live.long(), torch.cat([masks.neuron_live(n) for n in masks]))
    # after the updates, SparseOpt's cached factor is mask x sqrt(d_i / d_mean) of each entry's output channel
    for n, module in masks.modules.items():
        live = manual_output_channel_live(module, masks[n]).double()
        factor = (live * (live > 0).sum() / live.sum()).sqrt().float()
        assert torch.allclose(masks.neuron_scale(n), factor, atol=1e-6)
        expected = neuron_rows(module, masks[n]).float() * factor[:, None]
        assert torch.allclose(neuron_rows(module, module.weight_grad_scale), expected, atol=1e-6)


def test_conv_transpose_channels_last_and_sparse_init():
    torch.manual_seed(0)
    model = Decoder()
    dense_w = model.t1.weight.detach().clone()
    masks = sparsify(model, 0.5, "uniform", init="sparse", seed=3)
    live = masks.neuron_live("t1").double()
    factor = (masks.fan_in("t1") / live.clamp_min(1)).sqrt()
    rows = neuron_rows(model.t1, model.t1.weight.detach()).double()
    assert torch.allclose(rows, neuron_rows(model.t1, dense_w * masks["t1"]).double() * factor[:, None], atol=1e-6)
    model.to(memory_format=torch.channels_last)
    layout = masks.layout()
    flat_live = layout.row_sum(layout.gather([masks[n] for n in masks]))
    assert torch.equal(flat_live.long(), torch.cat([masks.neuron_live(n) for n in masks]))


def test_srigl_refuses_transposed_convolutions_clearly():
    model = Decoder()
    masks = sparsify(model, 0.5, fan_in="constant")
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    with pytest.raises(ValueError, match=r"transposed convolution\(s\) \['t1', 't2'\].*dense=\['t1', 't2'\]"):
        SRigL(masks, opt, delta_t=1, t_end_steps=10)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        h, _ = self.attn(h, h, h)
        return self.head(h[:, -1])


def test_layers_that_cannot_be_masked_warn_and_the_whole_model_is_reported():
    model = Recurrent()
    with pytest.warns(UserWarning) as record:
        masks = sparsify(model, 0.9)
    text = str(record[0].message)
    for part in ("emb.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "attn.in_proj_weight", "Embedding", "LSTM",
                 "MultiheadAttention", "masks.model_sparsity()", "dense=['attn', 'emb', 'lstm']"):
        assert part in text, part
    assert set(masks) == {"attn.out_proj", "head"}
    assert masks.sparsity() == pytest.approx(0.9, abs=1e-3)  # what the masked layers hold
    weights = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    zeros = sum(int((p == 0).sum()) for p in model.parameters() if p.dim() >= 2)
    assert masks.model_sparsity() == pytest.approx(zeros / weights, abs=1e-3) and masks.model_sparsity() < 0.3
    assert f"{masks.model_sparsity():.3f}" in text and "whole model" in repr(masks)
    from sparseopt_edu.diagnostics import mask_report

    assert mask_report(masks)["model_sparsity"] == masks.model_sparsity()
    model(torch.randint(0, 50, (2, 5))).sum().backward()  # still trains


def test_dense_by_choice_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = sparsify(Recurrent(), 0.9, dense=["emb", "lstm", "attn"])
    assert set(masks) == {"attn.out_proj", "head"} and "whole model" in repr(masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = sparsify(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)), 0.5)
    assert masks.model_sparsity() == masks.sparsity() and "whole model" not in repr(masks)


# ----- item 12: states that are refused -----------------------------------------------------------------------
def small():
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    masks = sparsify(model, 0.5)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    return model, masks, opt


def test_masks_load_state_dict_refuses_empty_and_non_boolean_masks():
    model, masks, _ = small()
    before = {n: m.clone() for n, m in masks.items()}
    state = masks.state_dict()
    empty = {**state, "masks": {**state["masks"], "0": torch.zeros(8, 6, dtype=torch.bool)}}
    with pytest.raises(ValueError, match="mask '0' keeps no weight"):
        masks.load_state_dict(empty)
    floats = {**state, "masks": {**state["masks"], "2": torch.randn(3, 8)}}  # old code: a dense layer
    with pytest.raises(ValueError, match=r"mask '2' has dtype torch.float32, not torch.bool.*mask.bool\(\)"):
        masks.load_state_dict(floats)
    assert all(torch.equal(before[n], masks[n]) for n in masks)
    masks.load_state_dict(state)  # a good state still loads
    sd = model.state_dict()
    sd["2.weight_mask"] = torch.ones(3, 8)  # the same through model.load_state_dict
    with pytest.raises(ValueError, match="mask '2' has dtype torch.float32"):
        model.load_state_dict(sd)
    sd["2.weight_mask"] = torch.zeros(3, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="mask '2' keeps no weight"):
        model.load_state_dict(sd)


def test_rigl_load_state_dict_refuses_a_union_of_the_wrong_shape():
    _, masks, opt = small()
    dst = RigL(masks, opt, delta_t=2, t_end_steps=10)
    state = dst.state_dict()
    state["t"] = 5
    bad = {**state, "union": {**state["union"], "0": torch.ones(6, 8, dtype=torch.bool)}}
    with pytest.raises(ValueError, match=r"ITOP union of '0' is torch.bool \(6, 8\), expected .* \(8, 6\)"):
        dst.load_state_dict(bad)
    bad = {**state, "union": {**state["union"], "2": torch.ones(3, 8)}}
    with pytest.raises(ValueError, match="ITOP union of '2' is torch.float32"):
        dst.load_state_dict(bad)
    assert dst.t == 0  # nothing was half-loaded
    dst.load_state_dict(state)
    assert dst.t == 5
