"""Issue 14, items 9 and 13: every bad input is one line naming the value and the fix (no traceback), and the
command line reads what was written (no option abbreviations; ``compare --config`` honours its method,
sparsity and seed)."""
from __future__ import annotations

import json
import os
import urllib.error

import numpy as np
import pytest
import torch
from test_data import _write_cifar
from torch import nn

from sparseopt_edu import RigL, SparseOpt, sparsify
from sparseopt_edu.data import load_dataset
from sparseopt_edu.train import TrainConfig, grid
from tests.cli_run import run

REAL_PLAN = grid.plan

TINY = ["--epochs", "1", "--hidden", "16", "--batch-size", "64", "--threads", "1", "--progress", "off",
        "--delta-t", "2"]


def one_line_error(code, err, *needles, status=2):
    assert code == status, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_device_cuda_without_gpu(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "train", "--device", "cuda", *TINY)
    one_line_error(code, err, "device='cuda'", "CUDA is not available", "--device cpu")
    code, _, err = run(capsys, "train", "--device", "gpu0", *TINY)
    one_line_error(code, err, "'gpu0'", "'cuda[:N]'")


def test_unknown_data_kwargs(capsys):
    code, _, err = run(capsys, "train", "--data-kwargs", '{"bogus": 1}', *TINY)
    one_line_error(code, err, "'bogus'", "dataset 'digits'", "size, channels")


@pytest.mark.parametrize("value,message", [(5, "dense_layers must be a list of module names"),
                                           ({"fc1": 1}, "dense_layers must be a list")])
def test_dense_layers_of_the_wrong_type_in_a_config(tmp_path, capsys, value, message):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dense_layers": value}))
    code, _, err = run(capsys, "train", "--config", cfg, *TINY)
    one_line_error(code, err, message, repr(value))


def test_dense_layers_string_is_one_name_not_letters(tmp_path, capsys):
    assert TrainConfig(dense_layers="fc1").dense_layers == ("fc1",)  # old code: ('f', 'c', '1')
    assert TrainConfig(dense_layers="fc1, head").dense_layers == ("fc1", "head")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dense_layers": "fc1", "n_train": 128}))
    code, out, err = run(capsys, "train", "--config", cfg, *TINY, "--json")
    assert code == 0, err
    assert json.loads(out)["config"]["dense_layers"] == ["fc1"]


def test_skew_out_folder(tmp_path, capsys):
    code, _, err = run(capsys, "skew", "--out", tmp_path, "--seeds", "1", "--sparsities", "0.5", "--hidden", "8")
    one_line_error(code, err, f"--out {tmp_path} is a folder", os.path.join(str(tmp_path), "skew.html"))


def test_download_offline(tmp_path, capsys, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    code, _, err = run(capsys, "train", "--dataset", "cifar100", "--download", "--data-root", tmp_path, *TINY)
    line = one_line_error(code, err, "could not download cifar100", "Name or service not known", "--dataset digits")
    assert "pass --download" not in line and "with --download" not in line  # they did


def test_max_grad_norm_text(capsys):
    code, _, err = run(capsys, "train", "--max-grad-norm", "abc")
    line = one_line_error(code, err, "--max-grad-norm", "'abc'", "expected a positive number")
    assert "_float_or_none" not in line


def test_strings_and_numpy_or_tensor_numbers_in_the_api():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    masks = sparsify(model, torch.tensor(0.5))  # old code: "sparsity must be a number" for a 0-d tensor
    assert masks.sparsity() == pytest.approx(0.5, abs=0.02)
    masks.remove()
    assert sparsify(model, np.float32(0.5)).sparsity() == pytest.approx(0.5, abs=0.02)
    opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1), sparsify(nn.Linear(4, 4), 0.5))
    with pytest.raises(ValueError, match=r"alpha .* must be a number in \[0, 1\], got '0.3'"):
        RigL(opt.masks, opt, alpha="0.3", t_end_steps=10)  # old code: TypeError '<=' not supported
    with pytest.raises(ValueError, match="sparsity must be a number in"):
        sparsify(nn.Linear(4, 4), torch.tensor([0.5, 0.5]))
    cfg = TrainConfig(sparsity=np.float64(0.8), lr=torch.tensor(0.05), epochs=np.int64(2))
    assert (cfg.sparsity, cfg.lr, cfg.epochs) == (0.8, pytest.approx(0.05), 2) and type(cfg.epochs) is int
    json.loads(cfg.to_json())  # JSON-safe
    for field, bad in (("alpha", "0.3"), ("max_grad_norm", "1")):
        with pytest.raises(ValueError, match=f"{field} must be a finite number, got '"):
            TrainConfig(**{field: bad})


@pytest.mark.parametrize("download", [False, True])
def test_corrupt_cifar_batch(tmp_path, capsys, download):
    _write_cifar(tmp_path, "cifar100", 60, 20)
    path = tmp_path / "cifar-100-python" / "train"
    path.write_bytes(b"I12x\n" + os.urandom(64))  # old code: ValueError invalid literal for int() (traceback)
    with pytest.raises(ValueError, match="is not a readable cifar100 batch"):
        load_dataset("cifar100", root=str(tmp_path))
    argv = ["train", "--dataset", "cifar100", "--data-root", tmp_path, *TINY] + (["--download"] if download else [])
    code, _, err = run(capsys, *argv)
    line = one_line_error(code, err, str(path), "damaged")
    if download:  # the files were there, so --download fetched nothing: say to delete them first
        assert "delete it, then --download fetches a fresh copy" in line
    else:
        assert "fetch it again with --download" in line


def test_diverged_run_says_what_to_change(capsys):
    code, out, err = run(capsys, "train", *TINY, "--lr", "1e5", "--momentum", "0.99", "--n-train", "640")
    assert "end: nan" in out
    one_line_error(code, err, "diverged", "lr=100000", "--lr 10000", "--max-grad-norm 1.0", status=3)


# ----- item 13 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,flag", [(["compare", "--method", "set"], "--method"),
                                       (["train", "--epoch", "1"], "--epoch"),
                                       (["skew", "--sparsity", "0.5"], "--sparsity"),
                                       (["reproduce", "table2", "--epoch", "1"], "--epoch")])
def test_no_option_abbreviations(capsys, argv, flag):
    code, _, err = run(capsys, *argv)  # old code: --method read as --methods, --epoch as --epochs
    one_line_error(code, err, "unrecognized arguments", flag)


def planned_jobs(capsys, monkeypatch, *argv):
    from sparseopt_edu.cli import CliError

    jobs = []

    def plan(*args, **kwargs):
        jobs.extend(REAL_PLAN(*args, **kwargs))
        raise CliError("planned")  # stop before training

    monkeypatch.setattr(grid, "plan", plan)
    code, out, err = run(capsys, "compare", *argv)
    assert code == 2 and "planned" in err, err
    return jobs, out


def test_compare_config_method_sparsity_and_seed_are_honoured(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"method": "set", "sparseopt": True, "sparsity": 0.8, "seed": 3, "epochs": 1}))
    jobs, out = planned_jobs(capsys, monkeypatch, "--config", cfg, "--out", tmp_path / "o")
    assert {j.variant for j in jobs} == {"dense", "rigl", "rigl+sparseopt", "set+sparseopt"}  # old: no set
    assert {j.sparsity for j in jobs if j.variant != "dense"} == {0.8}  # old: 0.9
    assert {j.seed for j in jobs} == {3}  # old: 0
    assert "from" in out and "sparsity 0.8" in out and "first seed 3" in out and "method set+sparseopt" in out
    jobs, out = planned_jobs(capsys, monkeypatch, "--config", cfg, "--sparsities", "0.5", "--seeds", "2",
                             "--out", tmp_path / "o")
    assert {j.sparsity for j in jobs if j.variant != "dense"} == {0.5} and {j.seed for j in jobs} == {3, 4}
    assert "overridden by --sparsities" in out
    # a train run's config.json (rigl+sparseopt, 0.9, seed 0) changes nothing
    cfg.write_text(TrainConfig(epochs=1).to_json())
    jobs, out = planned_jobs(capsys, monkeypatch, "--config", cfg, "--out", tmp_path / "o")
    assert [j.variant for j in jobs] == ["dense", "rigl", "rigl+sparseopt"]
    assert {j.sparsity for j in jobs if j.variant != "dense"} == {0.9} and {j.seed for j in jobs} == {0}
    assert "from" not in out
