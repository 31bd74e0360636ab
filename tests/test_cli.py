"""The sparseopt-edu subcommands end to end on tiny settings (CPU), and their errors."""
from __future__ import annotations

import csv
import json
import os

import pytest

from sparseopt_edu.cli import main
from tests.cli_run import run

TINY_TRAIN = ["--epochs", "1", "--hidden", "32", "--batch-size", "64", "--threads", "1", "--progress", "off"]


def test_train_writes_run_folder_and_resumes(tmp_path, capsys):
    code, out, err = run(capsys, "train", "--name", "t1", "--runs", tmp_path, *TINY_TRAIN, "--epochs", "2",
                         "--method", "rigl", "--delta-t", "5")
    assert code == 0, err
    assert "epoch   2" in out and "end: done" in out
    folder = tmp_path / "t1"
    for name in ("config.json", "history.json", "history.csv", "checkpoint.pt"):
        assert (folder / name).is_file()
    history = json.loads((folder / "history.json").read_text())
    assert history["reason"] == "done" and len(history["epoch"]) == 2 and history["topology"]
    code, out, err = run(capsys, "train", "--name", "t1", "--runs", tmp_path, "--resume", "--epochs", "3",
                         "--threads", "1")
    assert code == 0, err
    assert len(json.loads((folder / "history.json").read_text())["epoch"]) == 3


def test_train_from_config_file_and_json_output(tmp_path, capsys):
    from sparseopt_edu.train import TrainConfig

    cfg = tmp_path / "c.json"
    TrainConfig(hidden=32, batch_size=64, epochs=3, method="dense", progress=False).to_json(cfg)
    code, out, err = run(capsys, "train", "--config", cfg, "--epochs", "1", "--json", "--threads", "1")
    assert code == 0, err
    history = json.loads(out)  # nothing else on stdout
    assert history["config"]["method"] == "dense" and history["config"]["epochs"] == 1
    assert len(history["train_loss"]) == 1


@pytest.mark.parametrize("argv,message", [
    (["train", "--sparsity", "1.5"], "sparsity must be in [0.0, 1.0), got 1.5"),
    (["train", "--method", "rigl2"], "method must be one of"),
    (["train", "--config", "/nonexistent.json"], "no such file"),
    (["train", "--resume"], "--resume needs --name"),
    (["skew", "--norm", "bx", "--json"], "--norm must be among"),
    (["skew", "--sparsities", "0.5,1.0"], "--sparsities must be in [0, 1)"),
    (["compare", "--seeds", "0"], "--seeds must be >= 1"),
    (["compare", "--methods", "magic"], "unknown variant 'magic'"),
    (["reproduce", "table2", "--sparsities", "1.2"], "--sparsities must be numbers in (0, 1)"),
])
def test_bad_values_give_clear_errors(capsys, argv, message):
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and err.startswith("sparseopt-edu: error:")


@pytest.mark.parametrize("argv", [["train", "--sparsty", "0.9"], ["train", "--epochs", "many"],
                                  ["reproduce", "table3"], ["nonsense"], ["skew", "--data", "imagenet"],
                                  ["train", "--amp", "maybe"], ["compare", "--parallel", "0"],
                                  ["reproduce", "table2", "--parallel", "many"]])
def test_bad_flags_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_cifar_is_a_clear_error(tmp_path, capsys):
    code, _out, err = run(capsys, "train", "--dataset", "cifar100", "--data-root", tmp_path, *TINY_TRAIN)
    assert code == 2 and "--download" in err and "cifar100 not found" in err
    code, _out, err = run(capsys, "reproduce", "table2", "--data-root", tmp_path)
    assert code == 2
    assert "sparseopt-edu train --dataset cifar100 --download" in err and "--dataset fashion_mnist" in err


def test_skew_json_prints_only_rows(capsys):
    code, out, err = run(capsys, "skew", "--json", "--sparsities", "0,0.9", "--seeds", "2", "--hidden", "64",
                         "--threads", "1")
    assert code == 0, err
    rows = json.loads(out)
    assert [set(r) for r in rows] == [{"sparsity", "norm", "ratio", "theory"}] * 4
    by = {(r["norm"], r["sparsity"]): r for r in rows}
    assert by[("bn", 0.9)]["theory"] == pytest.approx(3.1623, abs=1e-3)
    assert by[("bn", 0.9)]["ratio"] > 2.0 and abs(by[("none", 0.9)]["ratio"] - 1.0) < 0.2
    assert by[("bn", 0.0)]["ratio"] == pytest.approx(1.0)


def test_skew_writes_html(tmp_path, capsys):
    out_file = tmp_path / "fig3.html"
    code, _out, err = run(capsys, "skew", "--norm", "ln", "--sparsities", "0.5,0.9", "--seeds", "1",
                         "--hidden", "32", "--out", out_file, "--threads", "1")
    assert code == 0, err
    text = out_file.read_text()
    assert "plotly" in text.lower() and "ln: measured" in text and "<script" in text


def test_compare_writes_table_and_report(tmp_path, capsys):
    code, _out, err = run(capsys, "compare", *TINY_TRAIN, "--sparsities", "0.9", "--seeds", "1", "--methods", "set",
                         "--out", tmp_path, "--delta-t", "5")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["variant"] for r in rows] == ["dense", "rigl", "rigl+sparseopt", "set", "set+sparseopt"]
    assert all(r["reason"] == "done" and float(r["final_test_acc"]) > 0.3 for r in rows)
    md = (tmp_path / "results.md").read_text()
    assert "| rigl+sparseopt | 90% | 1 |" in md
    html = (tmp_path / "report.html").read_text()
    assert "<script" in html and "rigl+sparseopt" in html and "https://cdn" not in html.split("<body>")[0]


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed (make setup installs it as root)")
def test_reproduce_table2_on_real_fashion_mnist_writes_one_json(tmp_path, capsys):
    code, out, err = run(capsys, "reproduce", "table2", "--dataset", "fashion_mnist", "--epochs", "2", "--seeds", "2",
                         "--sparsities", "0.9", "--n-train", "256", "--n-test", "128", "--batch-size", "64",
                         "--delta-t", "2", "--device", "cpu", "--threads", "1", "--out", tmp_path,
                         "--variants", "rigl,rigl+sparseopt,rigl+sparseopt:scope=update")
    assert code == 0, err
    assert "real Fashion-MNIST" in out and "Paired by seed" in out
    doc = json.loads((tmp_path / "results.json").read_text())
    assert len(doc["rows"]) == 6 and doc["config"]["dataset"] == "fashion_mnist"
    fields = {"variant", "method", "sparseopt", "sparsity", "seed", "grow_from", "scope", "epochs", "test_acc",
              "best_test_acc", "curves", "itop", "device"}
    for r in doc["rows"]:
        assert fields <= set(r) and len(r["curves"]["test_acc"]) == 2 == len(r["curves"]["train_loss"])
        assert r["device"] == "cpu" and 0 < r["itop"] <= 1
    assert {r["scope"] for r in doc["rows"]} == {"gradient", "update"}
    assert sorted(c["kind"] for c in doc["comparisons"]) == ["scope_vs_baseline", "scope_vs_gradient", "sparseopt"]
    assert all(c["metrics"]["test_acc"]["n"] == 2 for c in doc["comparisons"])


def test_reproduce_table2_on_digits(tmp_path, capsys):
    code, out, err = run(capsys, "reproduce", "table2", "--dataset", "digits", "--epochs", "1", "--seeds", "1",
                         "--sparsities", "0.9", "--n-train", "256", "--n-test", "100", "--batch-size", "64",
                         "--delta-t", "2", "--device", "cpu", "--threads", "1", "--out", tmp_path)
    assert code == 0, err
    assert "| 90% | SparseOpt |" in out and "61.34 ± 0.35" in out and "60.66 ± 0.43" in out
    assert "offline stand-in" in out
    for name in ("results.csv", "results.md", "report.html"):
        assert (tmp_path / name).is_file()
    cfg = json.loads((tmp_path / "runs" / "rigl_sparseopt-s90-seed0" / "config.json").read_text())
    assert cfg["model"] == "resnet20" and cfg["lr"] == 0.1 and cfg["nesterov"] and cfg["distribution"] == "erk"


def test_reproduce_compile_compiles_every_run():
    """``reproduce --compile``: every run of the grid is built with compile=True (runs still interleave on a GPU:
    tests/test_concurrent.py); without it, none is."""
    import argparse

    from sparseopt_edu.paper import table2_config

    sizes = dict(dataset="digits", epochs=1, batch_size=64, delta_t=2, n_train=256, n_test=100, device="cpu",
                 data_root="data")
    assert table2_config(argparse.Namespace(**sizes, compile=True)).compile is True
    assert table2_config(argparse.Namespace(**sizes)).compile is False
    from sparseopt_edu.cli import build_parser

    args = build_parser().parse_args(["reproduce", "table2", "--compile"])
    assert args.compile is True and table2_config(args).compile is True


def test_demo_tiny(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--tiny", "--out", tmp_path)
    assert code == 0, err
    assert "norm=bn" in out and "norm=none" in out and "| rigl+sparseopt | 90% |" in out
    for name in ("results.csv", "results.md", "report.html"):
        assert (tmp_path / name).is_file()


def test_console_entry_exit_status():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "sparseopt_edu.cli", "train", "--sparsity", "2"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "sparsity must be in [0.0, 1.0), got 2.0" in proc.stderr
