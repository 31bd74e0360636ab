import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from sparseopt_edu import SET, RigL, SparseOpt, SRigL, Static, sparsify
from sparseopt_edu.dst import UpdateSchedule
from tests.core_models import batch_for, small_cnn, small_mlp, train_steps

OPTS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=st.sampled_from(["mlp", "cnn1", "cnn4"]),
    sparsity=st.sampled_from([0.5, 0.8, 0.95]),
    method=st.sampled_from([SET, RigL, SRigL]),
    opt_name=st.sampled_from(list(OPTS)),
    correct=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_invariants_across_steps_and_updates(arch, sparsity, method, opt_name, correct, seed):
    torch.manual_seed(seed)
    model = small_mlp() if arch == "mlp" else small_cnn(groups=int(arch[-1]))
    masks = sparsify(model, sparsity, "erk", seed=seed, fan_in="constant" if method is SRigL else "random")
    counts = {n: masks.live_count(n) for n in masks}
    opt = SparseOpt(OPTS[opt_name](model.parameters()), masks, enabled=correct)
    dst = method(masks, opt, delta_t=3, alpha=0.4, t_end=0.8, total_steps=20, seed=seed)
    changed = []

    def check():
        assert masks.inactive_max() == {"weight": 0.0, "optimizer_state": 0.0}
        assert {n: int(masks[n].sum()) for n in masks} == counts

    for _ in range(20):
        train_steps(model, opt, 1, dst=None, gen=None)
        changed.append(dst.step())
        check()
    update_steps = [u["step"] for u in dst.updates]
    assert update_steps == [3, 6, 9, 12, 15]  # t % 3 == 0 and t < 16 (T_end exclusive)
    assert [t + 1 for t, c in enumerate(changed) if c] == [u["step"] for u in dst.updates if u.get("changed")]
    if method is SRigL:
        for name in masks:
            live = masks.neuron_live(name)
            assert torch.equal(live, SRigL.fan_in_targets(counts[name], dst.active[name]))


def test_schedule_cosine_and_drop_count():
    s = UpdateSchedule.build(delta_t=100, alpha=0.3, t_end=0.75, total_steps=1000)
    assert s.t_end == 750
    assert [t for t in range(0, 1001) if s.is_update(t)] == [100, 200, 300, 400, 500, 600, 700]
    assert s.drop_fraction(0) == pytest.approx(0.3)
    assert s.drop_fraction(375) == pytest.approx(0.15)
    assert s.drop_count(100, 1000) == math.floor(0.15 * (1 + math.cos(math.pi * 100 / 750)) * 1000)
    with pytest.raises(ValueError, match="total_steps"):
        UpdateSchedule.build(t_end=0.75)
    with pytest.raises(ValueError, match="delta_t"):
        UpdateSchedule.build(delta_t=0, t_end=10)


def planted_layer(grow_from="raw"):
    """A 4x10 layer with a known mask and weights; a RigL update at step 1 with a hand-set gradient."""
    model = nn.Sequential(nn.Linear(10, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2))
    masks = sparsify(model, 0.0, dense=["2"])
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[0, :2] = True  # neuron 0: density 0.2
    mask[1, :8] = True  # neuron 1: density 0.8
    mask[2, :5] = True
    mask[3, :5] = True
    masks.set_mask("0", mask)
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1, 41, dtype=torch.float32).view(4, 10) * mask)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.0), masks)
    dst = RigL(masks, opt, delta_t=1, alpha=0.3, t_end=10, grow_from=grow_from)
    return model, masks, opt, dst


@pytest.mark.parametrize("grow_from", ["raw", "corrected"])
def test_rigl_grows_exactly_where_gradient_is_planted(grow_from):
    model, masks, opt, dst = planted_layer(grow_from)
    n = masks.live_count("0")
    k = math.floor(0.15 * (1 + math.cos(math.pi / 10)) * n)  # f(1) * 20 = 5
    assert k == 5
    old = masks["0"].clone()
    grad = torch.zeros(4, 10)
    grad[0, 2:7] = 1.0  # raw favourite: sparse neuron 0 (scale sqrt(0.2/0.5) = 0.63)
    grad[1, 8:10] = 0.8  # corrected favourite: dense neuron 1 (scale sqrt(0.8/0.5) = 1.26) -> 1.01
    grad[2, 5:8] = 0.8
    model[0].weight.grad = grad.clone()
    for p in list(model.parameters())[1:]:
        p.grad = torch.zeros_like(p)
    opt.step()
    assert dst.step() is True
    new = masks["0"]
    w_old = torch.arange(1, 41, dtype=torch.float32).view(4, 10) * old
    live_vals = w_old[old]
    dropped_expected = old & (w_old <= live_vals.sort().values[k - 1])  # the k smallest |w|
    expected_grow = torch.zeros(4, 10, dtype=torch.bool)
    if grow_from == "raw":
        expected_grow[0, 2:7] = True
    else:
        expected_grow[1, 8:10] = True
        expected_grow[2, 5:8] = True
    assert torch.equal(new, (old & ~dropped_expected) | expected_grow)
    assert torch.all(model[0].weight[expected_grow] == 0)  # grown at exactly 0
    assert dst.updates[-1]["changed"] == {"0": 5}


def test_static_never_changes_and_set_changes():
    model = small_mlp()
    masks = sparsify(model, 0.8)
    before = masks["0"].clone()
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    dst = Static(masks, opt)
    train_steps(model, opt, 10, dst=dst)
    assert torch.equal(masks["0"], before) and dst.updates == []
    dst2 = SET(masks, opt, delta_t=2, t_end=10)
    train_steps(model, opt, 4, dst=dst2)
    assert not torch.equal(masks["0"], before)
    assert dst2.itop_rate() > 1 - masks.sparsity()


def test_rigl_needs_optimizer_and_refuses_non_elementwise():
    masks = sparsify(small_mlp(), 0.8)
    with pytest.raises(ValueError, match="pass the optimizer"):
        RigL(masks, None, t_end=10)
    with pytest.raises(TypeError, match="not an elementwise"):
        RigL(masks, torch.optim.LBFGS(masks.model.parameters()), t_end=10)


def test_non_finite_gradient_skips_update():
    model, masks, opt, dst = planted_layer()
    old = masks["0"].clone()
    model[0].weight.grad = torch.full((4, 10), float("nan"))
    opt.step()
    assert dst.step() is False
    assert torch.equal(masks["0"], old)
    assert "non-finite" in dst.updates[-1]["skipped"]


def test_leaked_weights_are_reported():
    model = small_mlp()
    masks = sparsify(model, 0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # neither SparseOpt nor attach: densifies
    dst = SET(masks, opt, delta_t=1, t_end=10)
    with pytest.raises(RuntimeError, match="masks.attach"):
        train_steps(model, opt, 1, dst=dst)


def test_attach_with_rigl_snapshots_raw_gradient_first():
    model = small_mlp()
    masks = sparsify(model, 0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    masks.attach(opt)  # registered before RigL: RigL's snapshot must still see the dense gradient
    dst = RigL(masks, opt, delta_t=1, t_end=10)
    x = torch.randn(8, 12)
    nn.functional.cross_entropy(model(x), torch.randint(0, 5, (8,))).backward()
    raw = model[0].weight.grad.clone()
    opt.step()
    assert torch.equal(masks.layout().split(dst.gradient_snapshot)[0], raw)
    assert dst.step() is True
    assert masks.inactive_max()["weight"] == 0.0


def _one_backward(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 12, generator=gen), torch.randint(0, 5, (8,), generator=gen)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


@pytest.mark.parametrize("how", ["attach_after", "sparseopt", "prepare_grads_first", "closure"])
def test_rigl_snapshots_the_raw_gradient_however_the_gradients_are_masked(how):
    """The raw dense gradient, never the masked one: whatever masks it and whenever (no private torch hooks)."""
    model = small_mlp()
    masks = sparsify(model, 0.8)
    if how == "attach_after":
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        dst = RigL(masks, opt, delta_t=1, t_end=10)
        masks.attach(opt)  # registered after RigL this time
    else:
        opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
        dst = RigL(masks, opt, delta_t=1, t_end=10)
    if how == "closure":
        raws = []

        def closure():
            opt.zero_grad()
            loss = _one_backward(model)
            raws.append(model[0].weight.grad.clone())
            return loss

        opt.step(closure)
        raw = raws[-1]
    else:
        _one_backward(model)
        raw = model[0].weight.grad.clone()
        if how == "prepare_grads_first":
            opt.prepare_grads()  # masks now (e.g. to clip yourself); RigL has its snapshot already
            assert not torch.equal(model[0].weight.grad, raw)
        opt.step()
    assert not torch.equal(raw * masks["0"], raw)  # the raw gradient is dense: masking would change it
    assert torch.equal(masks.layout().split(dst.gradient_snapshot)[0], raw)
    assert dst.step() is True and dst.gradient_snapshot is None


def test_gradient_snapshot_api():
    model = small_mlp()
    masks = sparsify(model, 0.8)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    dst = RigL(masks, opt, delta_t=2, t_end=10)
    assert dst.gradient_snapshot is None
    _one_backward(model)
    opt.step()  # step 1 is not an update step: no snapshot taken
    assert dst.gradient_snapshot is None and dst.step() is False
    dst.take_gradient_snapshot()  # for the next step by default (a CUDA graph records this call)
    flat = dst.gradient_snapshot
    assert flat.shape == (masks.layout().numel,)
    dst.clear_gradient_snapshot()
    assert dst.gradient_snapshot is None
    dst.use_gradient_snapshot(flat, 2)  # a graph's static buffer, handed over after its replay: kept, not copied
    assert dst.gradient_snapshot is flat and dst.step() is True
    with pytest.raises(ValueError, match=f"one flat tensor of the masks' layout \\({flat.numel()} entries\\)"):
        dst.use_gradient_snapshot(flat[:-1], 4)
    assert RigL.snapshot_gradients is RigL.take_gradient_snapshot  # the earlier names still work
    assert RigL.set_gradient_snapshot is RigL.use_gradient_snapshot


def test_a_dropped_rigl_leaves_no_hook_behind():
    import gc
    import weakref

    model = small_mlp()
    masks = sparsify(model, 0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    masks.attach(opt)
    ref = weakref.ref(RigL(masks, opt, delta_t=1, t_end=10))
    gc.collect()
    assert ref() is None  # the hook common to all optimizers holds the DST weakly, and goes with it
    _one_backward(model)
    opt.step()  # no error, and a new DST snapshots as before
    dst = SET(masks, opt, delta_t=1, t_end=10)
    assert dst.step() is True


def test_dst_state_dict_resume_is_exact():
    def run(split):
        torch.manual_seed(0)
        model = small_cnn()
        masks = sparsify(model, 0.8, seed=0)
        opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), masks)
        dst = RigL(masks, opt, delta_t=2, t_end=12)
        gen = torch.Generator().manual_seed(7)
        train_steps(model, opt, split, dst=dst, gen=gen)
        if split < 12:
            state = copy.deepcopy((model.state_dict(), opt.state_dict(), dst.state_dict(), gen.get_state()))
            torch.manual_seed(1)
            model = small_cnn()
            masks = sparsify(model, 0.8, seed=3)
            opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), masks)
            dst = RigL(masks, opt, delta_t=2, t_end=12)
            model.load_state_dict(state[0])
            opt.load_state_dict(state[1])
            dst.load_state_dict(state[2])
            gen.set_state(state[3])
            train_steps(model, opt, 12 - split, dst=dst, gen=gen)
        return model, dst

    full, dst_full = run(12)
    resumed, dst_resumed = run(5)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert dst_full.updates == dst_resumed.updates
    assert dst_full.itop_rate() == dst_resumed.itop_rate()


def test_srigl_ablates_neurons_without_salient_weights():
    model = nn.Sequential(nn.Linear(20, 6, bias=False), nn.BatchNorm1d(6), nn.Linear(6, 2))
    masks = sparsify(model, 0.5, "uniform", dense=["2"], fan_in="constant")  # 10 per neuron
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.0), masks)
    dst = SRigL(masks, opt, delta_t=1, alpha=0.3, t_end=10, gamma_sal=0.3)
    with torch.no_grad():
        model[0].weight.mul_(1000)
        model[0].weight[5].mul_(1e-6)  # neuron 5: tiny weights, all dropped first
    grad = torch.zeros(6, 20)
    grad[:5] = 1.0  # no gradient for neuron 5 either
    model[0].weight.grad = grad
    for p in list(model.parameters())[1:]:
        p.grad = torch.zeros_like(p)
    opt.step()
    assert dst.step()
    assert dst.active["0"].tolist() == [True] * 5 + [False]
    assert masks.neuron_live("0").tolist() == [12, 12, 12, 12, 12, 0]
    assert masks.live_count("0") == 60


def test_srigl_on_a_random_fan_in_mask_converts_it_with_a_warning_and_keeps_the_count():
    model = small_mlp()
    masks = sparsify(model, 0.8, seed=0)  # random fan-in
    total = masks.live_count()
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    with pytest.warns(UserWarning, match="constant fan-in"):
        dst = SRigL(masks, opt, delta_t=1, t_end=10)
    assert masks.live_count() == total
    for name in masks:
        live = masks.neuron_live(name)
        live = live[live > 0]  # a neuron that had no live weight stays inactive
        assert int(live.max() - live.min()) <= 1  # constant fan-in: B // n or B // n + 1 per active neuron
    train_steps(model, opt, 3, dst=dst)
    assert masks.live_count() == total and masks.inactive_max()["weight"] == 0.0


# ---------------------------------------------------------------------------------------------------------------
# deferred checks (the trainer's mode on a GPU): no host read inside update(), same records after flush()

class _NoHostReads:
    """Makes every tensor -> Python read raise (what a GPU would wait for) while active."""

    names = ("tolist", "item", "__bool__", "__int__", "__float__", "cpu", "numpy")

    def __enter__(self):
        self.saved = {n: getattr(torch.Tensor, n) for n in self.names}

        def refuse(*args, **kwargs):
            raise AssertionError("host read inside a deferred update")

        for n in self.names:
            setattr(torch.Tensor, n, refuse)

    def __exit__(self, *exc):
        for n, f in self.saved.items():
            setattr(torch.Tensor, n, f)


@pytest.mark.parametrize("method", [SET, RigL])
def test_deferred_updates_read_nothing_and_record_the_same(method):
    def run(defer):
        torch.manual_seed(0)
        model = small_mlp()
        masks = sparsify(model, 0.8)
        opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), masks)
        dst = method(masks, opt, delta_t=2, t_end=12)
        dst.defer_checks = defer
        gen = torch.Generator().manual_seed(1)
        changed = []
        for _ in range(12):
            x, y = batch_for(model, gen=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if defer:
                with _NoHostReads():
                    changed.append(dst.step())
            else:
                changed.append(dst.step())
        queued = [p for p in dst._pending if isinstance(p, tuple)]  # updates whose checks wait for flush()
        assert len(queued) == (sum(changed) if defer else 0)
        return changed, dst.updates, masks.state_dict()["masks"], model.state_dict()

    sync, deferred = run(False), run(True)
    assert sync[0] == deferred[0] and sum(sync[0]) >= 4
    assert sync[1] == deferred[1]  # records: steps, counts, ITOP, fan-in CV
    assert all(torch.equal(sync[2][n], deferred[2][n]) for n in sync[2])
    assert all(torch.equal(sync[3][n], deferred[3][n]) for n in sync[3])


def test_deferred_non_finite_update_keeps_the_mask_and_is_recorded_skipped():
    model, masks, opt, dst = planted_layer()
    dst.defer_checks = True
    old = masks["0"].clone()
    model[0].weight.grad = torch.full((4, 10), float("nan"))
    opt.step()
    assert dst.step() is True  # queued: the device decided to keep the old mask
    assert torch.equal(masks["0"], old) and masks.live_count("0") == int(old.sum())
    assert "non-finite" in dst.updates[-1]["skipped"] and not dst._pending


def test_deferred_leak_raises_at_the_flush():
    model = small_mlp()
    masks = sparsify(model, 0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # neither SparseOpt nor attach: densifies
    dst = SET(masks, opt, delta_t=1, t_end=10)
    dst.defer_checks = True
    train_steps(model, opt, 1, dst=dst)  # no error yet: nothing was read
    with pytest.raises(RuntimeError, match="masks.attach"):
        dst.flush()


# ---------------------------------------------------------------------------------------------------------------
# the registry: methods declare what they need; build() makes one by name (issue 15 item 4)

def test_registry_lists_every_method_and_the_config_derives_from_it():
    from sparseopt_edu import dst
    from sparseopt_edu.train.config import CHOICES, METHODS

    assert dst.METHODS == {"static": Static, "set": SET, "rigl": RigL, "srigl": SRigL}
    assert METHODS == ("dense", *dst.METHODS) and CHOICES["method"] == METHODS
    assert {m: dst.initial_fan_in(m) for m in dst.METHODS} == {
        "static": "random", "set": "random", "rigl": "random", "srigl": "constant"}
    assert {m: c.options for m, c in dst.METHODS.items()} == {
        "static": (), "set": (), "rigl": ("grow_from",), "srigl": ("grow_from", "gamma_sal")}


def test_a_method_registered_in_a_test_is_built_and_listed():
    from sparseopt_edu import dst

    class Lazy(SET):
        """SET that drops half as much: only to show that one class and one register() call add a method."""

        name = "lazy"
        options = ("shrink",)

        def __init__(self, masks, optimizer=None, *, shrink: float = 0.5, **kwargs):
            self.shrink = shrink
            super().__init__(masks, optimizer, **kwargs)

    dst.register(Lazy)
    try:
        masks = sparsify(small_mlp(), 0.8)
        opt = SparseOpt(torch.optim.SGD(masks.model.parameters(), lr=0.1), masks)
        built = dst.build("lazy", masks, opt, delta_t=2, t_end_steps=9, shrink=0.25, seed=3)
        assert type(built) is Lazy and built.shrink == 0.25 and built.seed == 3 and built.schedule.t_end == 9
        assert "lazy" in dst.METHODS and dst.initial_fan_in("lazy") == "random"
        with pytest.raises(ValueError, match="choose one of static, set, rigl, srigl, lazy"):
            dst.build("lazzy", masks, opt)
    finally:
        del dst.METHODS["lazy"]


def test_build_refuses_unknown_methods_and_options_it_does_not_take():
    from sparseopt_edu import dst
    from sparseopt_edu.train import TrainConfig

    masks = sparsify(small_mlp(), 0.8)
    opt = SparseOpt(torch.optim.SGD(masks.model.parameters(), lr=0.1), masks)
    with pytest.raises(ValueError, match=r"unknown DST method 'dense' \('dense' trains without masks.*choose one"):
        dst.build("dense", masks, opt)
    with pytest.raises(TypeError, match="'set' does not take grow_from: it has no options of its own"):
        dst.build("set", masks, opt, t_end_steps=10, grow_from="corrected")
    with pytest.raises(TypeError, match="'rigl' does not take gamma_sal: its options are grow_from .*srigl: "
                                        "grow_from, gamma_sal"):
        dst.build("rigl", masks, opt, t_end_steps=10, gamma_sal=0.5)
    built = dst.build("rigl", masks, opt, delta_t=2, t_end_steps=10, grow_from="corrected")
    assert type(built) is RigL and built.grow_from == "corrected"
    # a caller holding every method's settings (a TrainConfig) passes what the method declares
    cfg = TrainConfig(grow_from="corrected")
    assert dst.options_of("set", cfg) == {} and dst.options_of("srigl", cfg) == {"grow_from": "corrected"}
    assert dst.options_of("srigl", {"grow_from": "raw", "gamma_sal": 0.5, "lr": 1}) == {
        "grow_from": "raw", "gamma_sal": 0.5}


def test_register_checks_the_declarations():
    from sparseopt_edu import dst

    class Unnamed(SET):
        pass  # inherits name "set": it must name itself, not replace SET

    class Clash(SET):
        name = "rigl"

    class Typo(SET):
        name = "typo"
        options = ("grow_form",)

    class Fan(SET):
        name = "fan"
        initial_fan_in = "constant-ish"

    for cls, message in [(Unnamed, "must declare its own name"), (Clash, "already registered \\(RigL\\)"),
                         (Typo, "grow_form"), (Fan, "initial_fan_in must be one of")]:
        with pytest.raises(ValueError, match=message):
            dst.register(cls)
    assert list(dst.METHODS) == ["static", "set", "rigl", "srigl"]


# ---------------------------------------------------------------------------------------------------------------
# the drop count: one function for the host's decisions and the device's ranking (issue 15 item 5)

@settings(max_examples=300, deadline=None)
@given(fraction=st.one_of(st.floats(0.0, 1.0), st.builds(lambda k, m: min(k, m) / m, st.integers(0, 10**6),
                                                           st.integers(1, 10**6))),
       n=st.lists(st.integers(0, 10**9), min_size=1, max_size=8))
def test_drop_count_is_one_computation_on_host_and_device(fraction, n):
    from sparseopt_edu.dst.schedule import count_to_drop

    host = [count_to_drop(fraction, k) for k in n]
    device = count_to_drop(fraction, torch.tensor(n, dtype=torch.float64))
    assert host == [math.floor(fraction * k) for k in n] == [int(d) for d in device.tolist()]


def test_drop_count_refuses_float32_counts():
    from sparseopt_edu.dst.schedule import count_to_drop

    with pytest.raises(TypeError, match="must be float64"):
        count_to_drop(0.3, torch.tensor([10.0]))
