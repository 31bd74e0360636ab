"""Issue 14, item 7: the unit of T_end is explicit, and a schedule that never updates is refused or reported."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sparseopt_edu import RigL, SparseOpt, sparsify
from sparseopt_edu.cli import _config_from_args, build_parser
from sparseopt_edu.dst import Static
from sparseopt_edu.dst.schedule import UpdateSchedule
from sparseopt_edu.train import TrainConfig, Trainer


def tiny_dst(**kw):
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    masks = sparsify(model, 0.5)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), masks)
    return masks, opt


@pytest.mark.parametrize("kw,message", [
    ({"t_end": 1, "total_steps": 100}, "t_end=1 is ambiguous: write t_end=1.0"),
    ({"t_end": 0.75, "total_steps": -10}, "total_steps must be the number of optimizer steps"),
    ({"t_end": 0.75, "total_steps": True}, "total_steps must be"),
    ({"delta_t": True, "t_end_steps": 10}, "delta_t must be a positive number of steps"),
    ({"delta_t": 2.0, "t_end_steps": 10}, "delta_t must be"),
    ({"alpha": "0.3", "t_end_steps": 10}, "alpha (the initial drop fraction) must be a number in [0, 1], got '0.3'"),
    ({"alpha": float("nan"), "t_end_steps": 10}, "alpha"),
    ({"t_end": True, "total_steps": 10}, "t_end must be a fraction"),
    ({"t_end": "0.75", "total_steps": 10}, "t_end must be a fraction"),
    ({"t_end": -3}, "t_end must be >= 0"),
    ({"t_end": 1.5, "total_steps": 10}, "t_end_steps=N"),
    ({"t_end_steps": -1}, "t_end_steps must be"),
])
def test_bad_schedules_are_refused(kw, message):
    with pytest.raises(ValueError) as exc:
        UpdateSchedule.build(**kw)
    assert message in str(exc.value)


def test_units_fraction_and_steps():
    assert UpdateSchedule.build(t_end=1.0, total_steps=200, delta_t=10).t_end == 200
    assert UpdateSchedule.build(t_end=np.float32(0.5), total_steps=200, delta_t=10).t_end == 100
    assert UpdateSchedule.build(t_end_steps=50, delta_t=10).t_end == 50
    assert UpdateSchedule.build(t_end_steps=50, t_end=0.1, total_steps=1000, delta_t=10).t_end == 50  # steps win
    assert UpdateSchedule.build(t_end=10, delta_t=1).t_end == 10  # an int >= 2 stays a step count (older code)
    assert UpdateSchedule.build(alpha=torch.tensor(0.5), t_end_steps=10, delta_t=1).alpha == 0.5


def test_schedule_without_update_warns_and_static_does_not():
    with pytest.warns(UserWarning, match=r"no topology update: updates stop at step 8 .*delta_t=100"):
        UpdateSchedule.build(delta_t=100, t_end=0.75, total_steps=11)
    with pytest.warns(UserWarning, match="no topology update"):
        UpdateSchedule.build(delta_t=10, t_end_steps=10)
    masks, opt = tiny_dst()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Static(masks, opt, total_steps=5, t_end_steps=3)  # no updates on purpose: no warning
        RigL(masks, opt, delta_t=2, t_end=0.75, total_steps=20)


def test_rigl_keyword_t_end_steps_updates():
    masks, opt = tiny_dst()
    dst = RigL(masks, opt, delta_t=1, t_end_steps=3)
    assert dst.schedule.t_end == 3 and dst.schedule.is_update(2) and not dst.schedule.is_update(3)


def test_config_t_end_is_a_fraction_and_steps_have_their_own_field():
    assert TrainConfig(t_end=1).t_end == 1.0 and isinstance(TrainConfig(t_end=1).t_end, float)
    with pytest.raises(ValueError, match=r"t_end is a fraction of training in \(0, 1\], got 300: .*t_end_steps=300"):
        TrainConfig(t_end=300)
    with pytest.raises(ValueError, match=r"t_end must be in \(0.0, 1.0\]"):
        TrainConfig(t_end=0.0)
    with pytest.raises(ValueError, match="t_end_steps must be an integer >= 1"):
        TrainConfig(t_end_steps=0)
    assert TrainConfig.from_json(TrainConfig(t_end_steps=40).to_json()).t_end_steps == 40


def test_cli_t_end_1_is_the_whole_run():
    args = build_parser().parse_args(["train", "--t-end", "1"])
    assert _config_from_args(args).t_end == 1.0
    args = build_parser().parse_args(["train", "--t-end-steps", "7"])
    assert _config_from_args(args).t_end_steps == 7


def test_trainer_updates_with_t_end_1_and_uses_t_end_steps():
    base = dict(hidden=16, batch_size=64, epochs=1, delta_t=2, progress=False)
    t = Trainer(TrainConfig(t_end=1, **base))
    assert t.dst.schedule.t_end == t.total_steps > 2  # old code: t_end=1 step, no update ever
    t = Trainer(TrainConfig(t_end_steps=5, **base))
    assert t.dst.schedule.t_end == 5


# ---------------------------------------------------------------------------------------------------------------
# the schedule is an object a user can pass in (issue 15 item 4): when (delta_t, t_end) and how much (fraction)

def test_a_constant_fraction_schedule_drops_exactly_that_fraction():
    from sparseopt_edu.dst import SET, ConstantFraction

    class Counting(SET):  # records the drop counts each update ranks with (host ints and device tensor)
        name = "counting"
        seen = []

        def new_mask(self, inputs):
            self.seen.append((list(inputs.drop_host), inputs.drop.tolist()))
            return super().new_mask(inputs)

    masks, opt = tiny_dst()
    live = [masks.live_count(n) for n in masks]
    dst = Counting(masks, opt, schedule=UpdateSchedule(delta_t=1, t_end=4, fraction=ConstantFraction(0.25)))
    for _ in range(3):
        opt.step()
        dst.step()
    expected = [math.floor(0.25 * n) for n in live]
    assert Counting.seen == [(expected, [float(k) for k in expected])] * 3 and sum(expected) > 0
    assert [u["drop_fraction"] for u in dst.updates] == [0.25] * 3
    assert dst.schedule.drop_count(2, 40) == 10 and dst.schedule.alpha is None
    # any callable f(t, t_end) is a drop fraction; one outside [0, 1] is refused at the update that uses it
    bad = UpdateSchedule(delta_t=1, t_end=4, fraction=lambda t, t_end: 1.5)
    with pytest.raises(ValueError, match=r"gave 1.5 at step 1: it must return a number in \[0, 1\]"):
        bad.drop_fraction(1)


def test_the_keyword_shortcut_builds_an_equal_schedule_and_both_is_an_error():
    from sparseopt_edu.dst import CosineDecay

    masks, opt = tiny_dst()
    dst = RigL(masks, opt, delta_t=10, alpha=0.4, t_end=0.5, total_steps=100)
    assert dst.schedule == UpdateSchedule(delta_t=10, t_end=50, fraction=CosineDecay(0.4))
    assert dst.schedule == UpdateSchedule(delta_t=10, alpha=0.4, t_end=50)  # alpha= is the cosine's shortcut
    assert RigL(masks, opt, schedule=dst.schedule).schedule is dst.schedule
    with pytest.raises(ValueError, match=r"schedule=UpdateSchedule\(...\) or as the keywords \(delta_t, alpha\), "
                                         "not both"):
        RigL(masks, opt, schedule=dst.schedule, delta_t=5, alpha=0.3)
    with pytest.raises(ValueError, match="not both"):
        UpdateSchedule(alpha=0.3, fraction=CosineDecay(0.5))
    with pytest.raises(ValueError, match=r"t_end is a step count, got 0.75: .*build\(t_end=0.75, total_steps=T\)"):
        UpdateSchedule(delta_t=10, t_end=0.75)
    with pytest.raises(TypeError, match="fraction must be a function"):
        UpdateSchedule(delta_t=10, t_end=50, fraction=0.2)
    assert Static(masks, opt, schedule=dst.schedule).schedule.t_end == 0  # Static never updates
    assert "alpha=0.4, t_end=50" in repr(dst)


def test_schedule_checkpoints_old_format_and_custom_fractions():
    from sparseopt_edu.dst import ConstantFraction

    masks, opt = tiny_dst()
    dst = RigL(masks, opt, delta_t=10, t_end_steps=90)
    state = dst.state_dict()
    assert state["schedule"] == {"delta_t": 10, "alpha": 0.3, "t_end": 90}  # the format of earlier checkpoints
    state["schedule"] = {"delta_t": 7, "alpha": 0.2, "t_end": 70}  # a run saved before schedules were objects
    other = RigL(masks, opt, delta_t=10, t_end_steps=90)
    other.load_state_dict(state)
    assert other.schedule == UpdateSchedule(delta_t=7, alpha=0.2, t_end=70)
    # a function is code, not state: its repr is saved, the DST it loads into must be built with it
    half = UpdateSchedule(delta_t=5, t_end=60, fraction=ConstantFraction(0.5))
    custom = RigL(masks, opt, schedule=half).state_dict()
    assert custom["schedule"] == {"delta_t": 5, "t_end": 60, "fraction": "ConstantFraction(fraction=0.5)"}
    again = RigL(masks, opt, schedule=UpdateSchedule(delta_t=1, t_end=9, fraction=ConstantFraction(0.5)))
    again.load_state_dict(custom)
    assert again.schedule == half
    with pytest.raises(ValueError, match=r"saved with the drop fraction ConstantFraction\(fraction=0.5\), which a "
                                         "checkpoint cannot hold: build the DST with schedule="):
        RigL(masks, opt, delta_t=10, t_end_steps=90).load_state_dict(custom)
