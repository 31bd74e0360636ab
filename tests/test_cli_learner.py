"""The CLI as a learner meets it (issue 16 item 16): --help explains every flag, times are real, the demo report
says what the console says, and a long reproduce run is not silent."""
from __future__ import annotations

import argparse
import re
from dataclasses import fields

import pytest

from sparseopt_edu.cli import build_parser, main
from sparseopt_edu.train import RunControl, TrainConfig, grid
from sparseopt_edu.train.config import CHOICES, HELP


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_every_train_config_field_has_a_help_line():
    missing = [f.name for f in fields(TrainConfig) if not HELP.get(f.name, "").strip()]
    assert not missing, f"TrainConfig fields without a HELP line: {missing}"


@pytest.mark.parametrize("command", ["train", "compare"])
def test_generated_flags_have_help_and_choices(command):
    parser = _subparser(command)
    generated = [a for a in parser._actions if a.dest.startswith("cfg_")]
    assert len(generated) > 30
    for action in generated:
        name = action.dest[4:]
        assert action.help and action.help.strip() and "default" in action.help, action.option_strings
        assert not (action.metavar or "").startswith("CFG_"), (action.option_strings, action.metavar)
        if name in CHOICES and "auto" not in CHOICES[name]:
            assert action.metavar == "{" + ",".join(CHOICES[name]) + "}", (name, action.metavar)
    text = parser.format_help()
    assert "CFG_" not in text
    assert "--model {mlp,resnet20" in text and "--dataset {digits,mnist_subset" in text
    assert "inner optimizer" in text  # --optimizer's help line


def test_bad_choice_still_gets_the_config_message(capsys):
    assert main(["train", "--method", "rigl2"]) == 2
    assert "method must be one of dense, static, set, rigl, srigl" in capsys.readouterr().err


def test_time_per_run_counts_a_run_stopped_in_its_first_epoch(tmp_path):
    """A run that ends before its first epoch closes has no epoch time: time/run was 0.0 s for it."""
    base = TrainConfig(hidden=32, batch_size=32, epochs=1, n_train=512, n_test=64, method="static",
                       device="cpu", progress=False, log_every=1)
    jobs = grid.plan(base, ["static"], [0.9], [0], str(tmp_path))

    control = RunControl()

    def stop_early(ev):
        if ev.kind == "step" and ev.step >= 4:
            control.stop()

    (row,) = grid.run(jobs, callbacks=[stop_early], control=control)
    assert row["reason"] == "stopped" and row["history"]["time_s"] == []
    assert row["time_s"] > 0.0
    summary = grid.markdown_table(grid.summarize([row]))
    assert not re.search(r"\| 0\.0+ \|$", summary.strip().splitlines()[-1]), summary  # shown, not rounded away


def test_time_per_run_is_the_runs_wall_time(tmp_path):
    base = TrainConfig(hidden=32, batch_size=64, epochs=2, n_train=256, n_test=64, method="static",
                       device="cpu", progress=False)
    (row,) = grid.run(grid.plan(base, ["static"], [0.9], [0], str(tmp_path)))
    epochs = sum(row["history"]["time_s"])
    assert row["time_s"] == pytest.approx(row["history"]["meta"]["wall_s"]) and row["time_s"] >= epochs


def test_demo_report_carries_the_honest_note(tmp_path, capsys):
    assert main(["demo", "--tiny", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "usually shows no visible difference" in out
    page = (tmp_path / "report.html").read_text()
    assert "usually shows no visible difference" in page and "section 4b" in page


def test_reproduce_prints_progress_per_run_and_epoch(tmp_path, capsys):
    code = main(["reproduce", "table2", "--dataset", "shapes", "--epochs", "2", "--n-train", "64", "--n-test",
                 "32", "--batch-size", "32", "--seeds", "1", "--sparsities", "0.9", "--variants", "rigl",
                 "--device", "cpu", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    started = [i for i, ln in enumerate(lines) if "rigl-s90-seed0" in ln and "started (2 epochs" in ln]
    epochs = [i for i, ln in enumerate(lines) if "rigl-s90-seed0" in ln and re.search(r"epoch [12]/2", ln)]
    done = [i for i, ln in enumerate(lines) if "rigl-s90-seed0" in ln and "(done)" in ln]
    assert started and len(epochs) == 2 and done, out
    assert started[0] < epochs[0] < epochs[1] < done[0], out  # printed as the run goes, not at its end
