"""Reliability: torchrun, a run killed by SIGTERM and resumed, determinism, damaged checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparseopt_edu.train import History, TrainConfig, Trainer

BIN = Path(sys.executable).parent
TRAIN = ["--dataset", "digits", "--model", "mlp", "--hidden", "64", "--method", "rigl", "--delta-t", "20",
         "--batch-size", "16", "--threads", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args, cwd, **kw):
    return subprocess.run([str(BIN / "sparseopt-edu"), *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=300, **kw)


def final_state(run_dir: Path):
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    history = History.from_dict(json.loads((run_dir / "history.json").read_text())).without_wall_clock()
    return state["model"], state["masks"], history


def test_sigterm_mid_run_then_resume_equals_uninterrupted(tmp_path):
    epochs = ["--epochs", "12"]
    done = cli("train", *TRAIN, *epochs, "--name", "full", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([str(BIN / "sparseopt-edu"), "train", *TRAIN, *epochs, "--name", "killed"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "runs" / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted: make it longer"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # interrupted, records written, last checkpoint kept
    assert "interrupted" in out
    partial = json.loads((tmp_path / "runs" / "killed" / "history.json").read_text())
    assert partial["reason"] == "interrupted" and len(partial["epoch"]) < 12
    resumed = cli("train", "--name", "killed", "--resume", "--threads", "1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    model_a, masks_a, hist_a = final_state(tmp_path / "runs" / "full")
    model_b, masks_b, hist_b = final_state(tmp_path / "runs" / "killed")
    assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    assert all(torch.equal(masks_a["masks"][k], masks_b["masks"][k]) for k in masks_a["masks"])
    assert hist_a == hist_b


def test_same_seed_same_history_on_cpu():
    cfg = dict(model="mlp", dataset="digits", hidden=32, method="rigl", epochs=2, delta_t=10, batch_size=32,
               progress=False)
    a, b = (Trainer(TrainConfig(**cfg)).run().without_wall_clock() for _ in range(2))
    assert a == b
    c = Trainer(TrainConfig(**{**cfg, "seed": 1})).run().without_wall_clock()
    assert c != a


def test_damaged_checkpoint_gives_clear_error_and_is_not_overwritten(tmp_path):
    done = cli("train", *TRAIN, "--epochs", "1", "--name", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ckpt = tmp_path / "runs" / "r" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    damaged = ckpt.read_bytes()
    resumed = cli("train", "--name", "r", "--resume", cwd=tmp_path)
    assert resumed.returncode != 0
    assert "checkpoint" in resumed.stderr.lower()
    assert "Traceback" not in resumed.stderr
    assert ckpt.read_bytes() == damaged  # the user's file is left for them to inspect


def test_checkpoint_of_another_model_is_refused(tmp_path):
    done = cli("train", *TRAIN, "--epochs", "1", "--name", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    other = TrainConfig(model="mlp", dataset="digits", hidden=48, method="rigl", epochs=1, progress=False)
    trainer = Trainer(other)
    with pytest.raises((ValueError, RuntimeError), match="(?i)checkpoint|model|shape"):
        trainer.load_checkpoint(tmp_path / "runs" / "r" / "checkpoint.pt")


def test_wrong_dataset_path_names_the_fix(tmp_path):
    result = cli("train", "--dataset", "cifar100", "--data-root", str(tmp_path / "nowhere"), "--epochs", "1",
                 cwd=tmp_path)
    assert result.returncode != 0
    assert "--download" in result.stderr and "digits" in result.stderr
    assert "Traceback" not in result.stderr
