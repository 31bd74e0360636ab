"""Issue 14: a CLI fuzz test. Every bad flag value of ``train``, ``compare`` and ``skew`` exits non-zero with one
line on stderr that names the problem, and never a traceback.

Runs the CLI in-process (``sparseopt_edu.cli.main``, output captured) so a few hundred cases take seconds. Every
generated value is invalid, so each case fails at validation, before any data is trained on: a case that
trains (prints "training ...") is itself a failure.
"""
from __future__ import annotations

import contextlib
import io
import json
import string
import tempfile

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseopt_edu.cli import main
from sparseopt_edu.train.config import DISTRIBUTIONS, METHODS, OPTIMIZERS, SCHEDULES

TEXT = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", min_size=1, max_size=10)


def not_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return True
    return False


def bad_text(valid=()):
    """Text that is none of ``valid`` (and not a number, where a number would be read)."""
    return TEXT.filter(lambda s: s.strip() not in valid and s not in valid)


def below(lo: int):
    """Integers below ``lo`` or text that is not an integer."""
    return st.one_of(st.integers(-10**6, lo - 1).map(str), TEXT.filter(not_number),
                     st.sampled_from(["1.5", "2e3", "nan"]))


def outside(lo: float, hi: float, lo_open=False, hi_open=False):
    """Numbers outside [lo, hi] (or on an open end), non-finite ones, or text."""
    edges = ([lo] if lo_open else []) + ([hi] if hi_open else [])
    return st.one_of(
        st.floats(max_value=lo, exclude_max=not lo_open, allow_nan=False).map(repr),
        st.floats(min_value=hi, exclude_min=not hi_open, allow_nan=False).map(repr),
        st.sampled_from(["nan", "inf", "-inf", *map(repr, edges)]),
        TEXT.filter(not_number),
    )


CHOICES = {"--model": ("mlp", "mlp4", "resnet20", "resnet32", "vgg11", "cnn"), "--dataset": (),
           "--norm": ("bn", "ln", "gn", "none"), "--method": METHODS, "--optimizer": OPTIMIZERS,
           "--schedule": SCHEDULES, "--distribution": DISTRIBUTIONS, "--grow-from": ("raw", "corrected"),
           "--scope": ("gradient", "update"), "--skew-every": ("update", "never"), "--init": ("dense", "sparse"),
           "--ddp-grad-dtype": ("fp32", "bf16")}
AUTO = ("auto", "1", "true", "yes", "on", "0", "false", "no", "off")

CONFIG_FLAGS = {
    **{flag: bad_text(valid) for flag, valid in CHOICES.items()},
    "--dataset": bad_text(("digits", "mnist_subset", "shapes", "cifar10", "cifar100", "mnist", "fashion_mnist",
                           "fake")),
    **{flag: below(1) for flag in ("--hidden", "--depth", "--batch-size", "--epochs", "--delta-t",
                                   "--eval-every-epochs", "--checkpoint-every-epochs", "--log-every")},
    **{flag: below(0) for flag in ("--seed", "--warmup-steps")},
    **{flag: st.one_of(st.integers(-1000, 0).map(str), TEXT.filter(lambda s: not_number(s) and
                                                                   s.strip().lower() not in ("none", "")))
       for flag in ("--steps", "--n-train", "--n-test", "--t-end-steps")},
    "--sparsity": outside(0.0, 1.0, hi_open=True),
    "--lr": outside(0.0, 1e6, lo_open=True),
    "--momentum": outside(0.0, 1.0, hi_open=True),
    "--weight-decay": outside(0.0, 1e6),
    "--label-smoothing": outside(0.0, 1.0, hi_open=True),
    "--alpha": outside(0.0, 1.0),
    "--t-end": outside(0.0, 1.0, lo_open=True),
    "--max-grad-norm": st.one_of(st.floats(max_value=0.0, allow_nan=False).map(repr), st.just("nan"),
                                 TEXT.filter(lambda s: not_number(s) and s.strip().lower() not in ("none", ""))),
    **{flag: bad_text(AUTO).filter(lambda s: s.strip().lower() not in AUTO)
       for flag in ("--amp", "--channels-last", "--cuda-graphs", "--progress", "--sync-bn")},
    "--device": bad_text(("auto", "cpu")).filter(lambda s: not s.startswith("cuda")),
    "--data-kwargs": st.one_of(
        TEXT.filter(lambda s: not s.lstrip().startswith("{")),
        st.sampled_from(["[1, 2]", "3", '"size"', "null"]),
        st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6).filter(
            lambda k: k not in ("size", "channels")), st.integers(0, 3), min_size=1, max_size=2).map(json.dumps)),
    "--dense-layers": st.text(string.ascii_lowercase + "0123456789_", min_size=1, max_size=8).filter(
        lambda s: s not in ("fc1", "head")),
    "--config": st.text(string.ascii_lowercase, min_size=1, max_size=8).map(lambda s: f"missing/{s}.json"),
    "--threads": st.integers(-5, 0).map(str),
}

GRID_FLAGS = {
    "--sparsities": st.one_of(outside(0.0, 1.0, lo_open=True, hi_open=True),
                              st.sampled_from(["", ",", "0.5,1", "0.5,abc"])),
    "--seeds": below(1),
    "--parallel": st.one_of(st.integers(-5, 0).map(str), TEXT.filter(lambda s: not s.strip().isdigit()
                                                                    and s != "auto")),
    "--methods": st.sampled_from(["magic", "rigl+adam", "dense+sparseopt", "set,nope", "srigl+"]),
    **{flag: CONFIG_FLAGS[flag] for flag in ("--lr", "--epochs", "--alpha", "--t-end", "--device", "--data-kwargs",
                                             "--max-grad-norm", "--dataset", "--model")},
}

SKEW_FLAGS = {
    "--sparsities": st.one_of(outside(0.0, 1.0, hi_open=True), st.sampled_from(["", "0.5,1.0", "x"])),
    "--norm": st.one_of(bad_text(("bn", "ln", "gn", "none")).filter(lambda s: all(
        p.strip() in ("bn", "ln", "gn", "none", "") for p in s.split(",")) is False), st.just(",")),
    "--seeds": below(1),
    "--hidden": below(1),
    "--data": bad_text(("digits", "mnist_subset")),
    "--out": st.just("."),  # a folder
    "--threads": st.integers(-5, 0).map(str),
}

BASE = {"train": ["--epochs", "1", "--hidden", "8", "--n-train", "64", "--progress", "off"],
        "compare": ["--epochs", "1", "--hidden", "8", "--n-train", "64", "--progress", "off", "--parallel", "1"],
        "skew": ["--seeds", "1", "--hidden", "8", "--sparsities", "0.5"]}
FLAGS = {"train": CONFIG_FLAGS, "compare": GRID_FLAGS, "skew": SKEW_FLAGS}


@st.composite
def bad_invocations(draw):
    command = draw(st.sampled_from(sorted(FLAGS)))
    flag = draw(st.sampled_from(sorted(FLAGS[command])))
    value = draw(FLAGS[command][flag])
    return [command, *BASE[command], f"{flag}={value}"]  # "=": a value may start with "-"


def run_in_process(argv):
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as where, contextlib.chdir(where), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse errors
            code = e.code
        finally:
            torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=bad_invocations())
def test_every_bad_flag_is_one_clear_line(argv):
    code, out, err = run_in_process(argv)
    assert code not in (0, None), (argv, out, err)
    assert "Traceback" not in err, (argv, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, (argv, err)
    assert "error:" in lines[0] and len(lines[0]) > len("sparseopt-edu: error: ") + 10, (argv, err)
    assert "training " not in out, ("validation let a bad value through to training", argv, out)
