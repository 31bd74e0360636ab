"""No run is lost, clobbered or mislabelled (issue 14, items 2-6, 8, 10): kills, resumes, locks, names, writes."""
from __future__ import annotations

import csv
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sparseopt_edu.train import History, Trainer, runs
from sparseopt_edu.train import checkpoint as ckpt
from tests.cli_run import run

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["--hidden", "32", "--batch-size", "64", "--threads", "1", "--progress", "off", "--method", "rigl",
        "--delta-t", "5", "--lr", "0.05"]


def train(capsys, tmp_path, name, *extra):
    return run(capsys, "train", "--name", name, "--runs", tmp_path, *TINY, *extra)


def cli(*args, cwd, **kw):
    return subprocess.run([str(BIN / "sparseopt-edu"), *map(str, args)], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300, **kw)


def one_line_error(err: str) -> bool:
    lines = [ln for ln in err.splitlines() if ln.startswith("sparseopt-edu: error:")]
    return len(lines) == 1 and "Traceback" not in err


# ----- item 2: a killed run can be resumed ----------------------------------------------------------------
def test_config_and_history_are_on_disk_while_the_run_goes(tmp_path):
    seen = []

    def look(event):
        if event.kind == "epoch":
            folder = tmp_path / "r"
            seen.append((json.loads((folder / "config.json").read_text())["epochs"],
                         json.loads((folder / "history.json").read_text())))

    from sparseopt_edu.train import TrainConfig

    cfg = TrainConfig(hidden=32, batch_size=64, epochs=3, delta_t=5, progress=False, run_dir=str(tmp_path / "r"))
    Trainer(cfg, callbacks=[look]).run()
    # the "epoch" event comes before that epoch's files: the files hold the epochs before it
    assert [s[0] for s in seen] == [3, 3, 3]
    assert [len(s[1]["epoch"]) for s in seen] == [0, 1, 2]
    assert all(s[1]["reason"] == "running" for s in seen)
    assert json.loads((tmp_path / "r" / "history.json").read_text())["reason"] == "done"


def test_resume_removes_orphan_temp_files_and_runs_without_checkpoint(tmp_path, capsys):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden": 32, "batch_size": 64, "epochs": 1, "delta_t": 5,
                                                    "progress": False}))
    (folder / ".tmp-abc123checkpoint.pt").write_bytes(b"half a checkpoint")
    code, out, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--threads", "1")
    assert code == 0, err
    assert "no checkpoint yet" in out
    assert not list(folder.glob(".tmp-*"))
    assert json.loads((folder / "history.json").read_text())["reason"] == "done"


def test_resume_without_config_json_uses_the_checkpoint_config(tmp_path, capsys):
    code, _, err = train(capsys, tmp_path, "r", "--epochs", "1")
    assert code == 0, err
    (tmp_path / "r" / "config.json").unlink()  # as a run killed by an older version left it
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--epochs", "2",
                       "--threads", "1")
    assert code == 0, err
    assert len(json.loads((tmp_path / "r" / "history.json").read_text())["epoch"]) == 2


# ----- item 3: resume checks that the checkpoint belongs to the run ---------------------------------------
@pytest.fixture
def done_run(tmp_path, capsys):
    code, _, err = train(capsys, tmp_path, "r", "--epochs", "2")
    assert code == 0, err
    return tmp_path / "r"


def test_checkpoint_of_another_configuration_is_refused(tmp_path, capsys, done_run):
    code, _, err = train(capsys, tmp_path, "other", "--epochs", "1", "--lr", "0.2", "--seed", "3")
    assert code == 0, err
    shutil.copy(tmp_path / "other" / "checkpoint.pt", done_run / "checkpoint.pt")  # same shapes, other settings
    before = (done_run / "history.json").read_text()
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--epochs", "3")
    assert code == 2 and one_line_error(err)
    assert "belongs to another run" in err and "lr (0.2" in err and "seed (3" in err
    assert (done_run / "history.json").read_text() == before


def test_resume_with_another_config_file_or_method_is_refused(tmp_path, capsys, done_run):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"method": "set", "hidden": 32}))
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--config", other)
    assert code == 2 and one_line_error(err)
    assert "method ('rigl' in the run, 'set' here)" in err
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--method", "srigl")
    assert code == 2 and one_line_error(err) and "method ('rigl' in the run, 'srigl' here)" in err
    same = tmp_path / "same.json"
    same.write_text(json.dumps({"hidden": 32, "method": "rigl"}))  # agrees with the run: accepted
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--config", same)
    assert code == 0, err


def test_resume_epochs_cannot_shorten_and_an_extension_is_recorded(tmp_path, capsys, done_run):
    config_before = (done_run / "config.json").read_text()
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--epochs", "1")
    assert code == 2 and one_line_error(err) and "cannot be shortened" in err
    assert (done_run / "config.json").read_text() == config_before
    code, out, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--epochs", "3")
    assert code == 0, err
    assert "run length changed" in out
    history = json.loads((done_run / "history.json").read_text())
    assert len(history["epoch"]) == 3 and json.loads((done_run / "config.json").read_text())["epochs"] == 3
    [change] = history["meta"]["length_changes"]
    assert change["at_epoch"] == 2 and change["at_step"] > 0
    assert change["from"] == {"epochs": 2, "steps": None} and change["to"] == {"epochs": 3, "steps": None}


def test_adam_checkpoint_into_sgd_run_and_missing_rng_are_clear_errors(tmp_path, capsys, done_run):
    code, _, err = train(capsys, tmp_path, "adam", "--epochs", "1", "--optimizer", "adam")
    assert code == 0, err
    shutil.copy(tmp_path / "adam" / "checkpoint.pt", done_run / "checkpoint.pt")
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume")
    assert code == 2 and one_line_error(err) and "optimizer ('adam' in the run, 'sgd' here)" in err

    code, _, err = train(capsys, tmp_path, "norng", "--epochs", "1")
    assert code == 0, err
    path = tmp_path / "norng" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    del state["rng"], state["checksum"]  # as an edited or foreign file would be
    torch.save(state, path)
    code, _, err = run(capsys, "train", "--name", "norng", "--runs", tmp_path, "--resume", "--epochs", "2")
    assert code == 2 and one_line_error(err) and "lacks 'rng'" in err
    assert "no checksum" in err  # the CLI prints warnings as "sparseopt-edu: warning: ..." lines


# ----- item 4: same-name runs -------------------------------------------------------------------------------
def test_a_run_folder_in_use_is_refused_and_a_dead_owner_never_blocks(tmp_path, capsys):
    folder = tmp_path / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from sparseopt_edu.train.runs import RunLock; "
                               f"lock = RunLock({str(folder)!r}).acquire(); open({str(folder / 'config.json')!r}, 'w').write('{{}}'); "
                               "print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, err = train(capsys, tmp_path, "r", "--epochs", "1")
        assert code == 2 and one_line_error(err)
        assert f"in use by process {holder.pid}" in err and "training" not in out
    finally:
        holder.kill()  # SIGKILL: its lock dies with it
        holder.wait()
    assert (folder / ".lock").read_text().startswith(str(holder.pid))  # a stale lock file is left behind ...
    code, _, err = train(capsys, tmp_path, "r", "--epochs", "1", "--overwrite")
    assert code == 0, err  # ... and does not block


def test_two_trainers_of_one_folder_in_one_process(tmp_path):
    from sparseopt_edu.train import TrainConfig

    cfg = TrainConfig(hidden=32, batch_size=64, epochs=1, progress=False, run_dir=str(tmp_path / "r"))
    first = Trainer(cfg)
    with pytest.raises(runs.RunInUseError, match="in use by process"):
        Trainer(cfg)
    first.run()  # ends by releasing the folder
    Trainer(cfg).run()


def test_a_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys, done_run):
    before = {f: (done_run / f).read_bytes() for f in ("config.json", "history.json", "checkpoint.pt")}
    code, out, err = train(capsys, tmp_path, "r", "--epochs", "1")
    assert code == 2 and one_line_error(err) and "training" not in out
    assert "a finished run (2 epochs)" in err and f"sparseopt-edu train --name r --runs {tmp_path} --resume" in err
    assert "--overwrite" in err
    assert {f: (done_run / f).read_bytes() for f in before} == before
    code, _, err = train(capsys, tmp_path, "r", "--epochs", "1", "--overwrite")
    assert code == 0, err
    assert len(json.loads((done_run / "history.json").read_text())["epoch"]) == 1


# ----- item 5: compare keeps the finished runs' summary on Ctrl-C / SIGTERM ---------------------------------
def test_compare_interrupted_writes_the_finished_runs(tmp_path, capsys, monkeypatch):
    from sparseopt_edu.train import concurrent

    made = []

    class CtrlCInSecondRun(Trainer):
        def __init__(self, cfg, callbacks=(), control=None):
            made.append(cfg)
            extra = [self._ctrl_c] if len(made) == 2 else []
            super().__init__(cfg, [*callbacks, *extra], control)

        @staticmethod
        def _ctrl_c(event):
            if event.kind == "step" and event.step >= 5:
                raise KeyboardInterrupt

    monkeypatch.setattr(concurrent, "Trainer", CtrlCInSecondRun)
    code, _, err = run(capsys, "compare", *TINY[:-6], "--epochs", "1", "--out", tmp_path, "--delta-t", "5",
                       "--parallel", "1")
    assert code == 130
    assert "hold the 2 of 3 runs that ended" in err
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [(r["variant"], r["reason"]) for r in rows] == [("dense", "done"), ("rigl", "interrupted")]
    assert "| dense |" in (tmp_path / "results.md").read_text()
    assert len(made) == 2  # no run started after Ctrl-C


@pytest.mark.slow
def test_compare_parallel_stops_promptly_on_sigterm(tmp_path):
    """A CPU process pool under SIGTERM: it stops within seconds, the queued runs never start, every run that had
    ended keeps its row, and a run in progress ends "interrupted" (or "stopped") with its last epoch's checkpoint.

    Which of the two parallel runs ends first, and whether the other one is stepping, between epochs or still
    being built when the signal comes, depends on the machine's load (under load the second job ended first, so
    the first row was the interrupted dense run): the test asserts what must hold in every order."""
    epochs = 60
    args = ["compare", "--hidden", "32", "--batch-size", "64", "--threads", "1", "--progress", "off",
            "--epochs", epochs, "--delta-t", "50", "--methods", "set,static", "--parallel", "2", "--out", tmp_path,
            "--skew-every", "never", "--log-every", "50"]
    proc = subprocess.Popen([str(BIN / "sparseopt-edu"), *map(str, args)], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = tmp_path / "results.csv"
    deadline = time.time() + 120
    while not results.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the grid ended before it could be interrupted: make the runs longer"
    before = list(csv.DictReader(results.open()))  # written atomically as each run ends: the runs ended so far
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    stopped_in = time.time() - t0
    assert proc.returncode == 130, err
    assert stopped_in < 10, f"took {stopped_in:.1f}s to stop"
    assert "Traceback" not in err and "interrupted" in err
    rows = list(csv.DictReader(results.open()))
    assert {r["reason"] for r in rows} <= {"done", "interrupted", "stopped"}, rows
    # every run that had ended before the signal keeps its row, still "done"
    assert before and {r["reason"] for r in before} == {"done"}, before
    assert {(r["run_dir"], r["reason"]) for r in before} <= {(r["run_dir"], r["reason"]) for r in rows}
    # the queued runs never started (7 were planned): each run that ended freed one of the 2 workers for one more
    folders = sorted((tmp_path / "runs").iterdir())
    done = sum(r["reason"] == "done" for r in rows)
    assert len(folders) <= done + 2 and len(rows) < 7, ([f.name for f in folders], rows)
    by_dir = {Path(r["run_dir"]).name: r for r in rows}
    assert set(by_dir) <= {f.name for f in folders}
    print(f"\n[sigterm] stopped in {stopped_in:.1f} s; ended before it: {[Path(r['run_dir']).name for r in before]}; "
          f"rows: {[(n, r['reason'], r['epochs']) for n, r in by_dir.items()]}; started: {[f.name for f in folders]}")
    for folder in folders:
        checkpoint = folder / "checkpoint.pt"
        row = by_dir.get(folder.name)
        if row is None:  # started, then stopped while it was built or in its first epoch: nothing trained is lost
            assert not checkpoint.exists(), f"{folder.name} has a checkpoint but no row in results.csv: {rows}"
            continue
        history = json.loads((folder / "history.json").read_text())
        assert history["reason"] == row["reason"], (folder.name, history["reason"], row)
        n = int(row["epochs"])
        if row["reason"] == "done":
            assert n == epochs and ckpt.load(checkpoint)["loop"]["epoch"] == epochs, row
        elif n:  # interrupted: the checkpoint of its last whole epoch stays (or the one before, if it was writing)
            assert ckpt.load(checkpoint)["loop"]["epoch"] in (n - 1, n), (folder.name, n)
        else:
            assert not checkpoint.exists() or ckpt.load(checkpoint)["loop"]["epoch"] == 0, folder.name


# ----- item 6: write failures ---------------------------------------------------------------------------------
def test_unwritable_run_folder_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, out, err = train(capsys, blocker, "r", "--epochs", "1")
    assert code == 1 and one_line_error(err) and "training" not in out
    assert f"{blocker / 'r'}" in err and "is a file, not a folder" in err and "--runs" in err


def test_permission_denied_names_the_folder(tmp_path, capsys, monkeypatch):
    def denied(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(runs.tempfile, "mkstemp", denied)
    code, out, err = run(capsys, "compare", *TINY[:-6], "--epochs", "1", "--out", tmp_path / "c")
    assert code == 1 and one_line_error(err) and "runs ->" not in out
    assert "permission denied" in err and str(tmp_path / "c") in err


def test_disk_full_on_a_checkpoint_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    saves = []
    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        saves.append(f)
        if len(saves) == 2:
            with open(f, "wb") as fh:
                fh.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    code, out, err = train(capsys, tmp_path, "r", "--epochs", "3")
    assert code == 1 and one_line_error(err)
    folder = tmp_path / "r"
    assert f"could not write {folder / 'checkpoint.pt'}: the disk is full" in err and "resume" in err
    assert not list(folder.glob(".tmp-*"))
    state = ckpt.load(folder / "checkpoint.pt")  # the first epoch's checkpoint, whole
    assert state["loop"]["epoch"] == 1
    history = json.loads((folder / "history.json").read_text())
    assert history["reason"] == "write_error" and len(history["epoch"]) == 2
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--threads", "1")
    assert code == 0, err
    assert json.loads((folder / "history.json").read_text())["reason"] == "done"


def test_torch_save_runtime_error_on_a_full_disk_says_so(tmp_path, monkeypatch):
    def enforce_fail(obj, f, *a, **kw):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(ckpt.torch, "save", enforce_fail)
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda p: SimpleNamespace(total=10 * 2**30, used=0, free=1024))
    with pytest.raises(runs.RunWriteError, match=r"checkpoint\.pt: the disk is probably full \(0\.0 MiB free"):
        ckpt.save({"x": 1}, tmp_path / "checkpoint.pt")
    assert not (tmp_path / "checkpoint.pt").exists() and not list(tmp_path.glob(".tmp-*"))


# ----- item 8: run names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,problem", [
    ("../x", "path separator"), ("/tmp/abs", "path separator"), ("..", "special folder name"),
    (".", "special folder name"), ("a\nb", "control character"), ("x" * 101, "101 characters long"),
    ("a/b", "path separator"), ("", "is empty"), (" pad", "starts or ends with a space"), ("tab\there", "control"),
])
def test_bad_run_names_are_refused_before_any_work(tmp_path, capsys, name, problem):
    runs_dir = tmp_path / "runs"
    code, out, err = run(capsys, "train", "--name", name, "--runs", runs_dir, "--epochs", "1", "--threads", "1")
    assert code == 2 and one_line_error(err) and problem in err
    assert "training" not in out
    assert os.listdir(tmp_path) == []  # nothing written, inside or outside --runs


def test_a_plain_long_name_is_fine(tmp_path, capsys):
    code, _, err = train(capsys, tmp_path, "rigl-s90_seed0.v2" + "x" * 80, "--epochs", "1")
    assert code == 0, err


# ----- item 10: checksums -------------------------------------------------------------------------------------
def _tensor_data_spans(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte ranges of the tensor storages inside a torch.save zip file."""
    raw = path.read_bytes()
    spans = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if "/data/" in info.filename and info.file_size >= 8:
                off = info.header_offset
                name_len = int.from_bytes(raw[off + 26:off + 28], "little")
                extra_len = int.from_bytes(raw[off + 28:off + 30], "little")
                start = off + 30 + name_len + extra_len
                spans.append((start, start + info.file_size))
    return spans


def test_corrupted_tensor_data_is_detected_and_left_untouched(tmp_path, capsys):
    code, _, err = train(capsys, tmp_path, "r", "--epochs", "1")
    assert code == 0, err
    path = tmp_path / "r" / "checkpoint.pt"
    good = path.read_bytes()
    spans = _tensor_data_spans(path)
    assert spans
    rng = random.Random(0)
    for _ in range(40):
        start, end = rng.choice(spans)
        at = rng.randrange(start, end - 4)
        bad = bytearray(good)
        bad[at:at + 4] = bytes(b ^ 0xFF for b in bad[at:at + 4])
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="damaged"):
            ckpt.load(path)
    code, _, err = run(capsys, "train", "--name", "r", "--runs", tmp_path, "--resume", "--epochs", "2")
    assert code == 2 and one_line_error(err) and "damaged" in err and "left untouched" in err
    assert path.read_bytes() == bytes(bad)


def test_random_corruption_anywhere_never_loads_different_contents(tmp_path, capsys):
    code, _, err = train(capsys, tmp_path, "r", "--epochs", "1")
    assert code == 0, err
    path = tmp_path / "r" / "checkpoint.pt"
    good = path.read_bytes()
    reference = ckpt.checksum(ckpt.load(path))
    rng = random.Random(1)
    for _ in range(30):
        bad = bytearray(good)
        at = rng.randrange(0, len(bad) - 4)
        bad[at:at + 4] = bytes(rng.randrange(256) for _ in range(4))
        path.write_bytes(bytes(bad))
        try:
            state = ckpt.load(path)
        except ValueError:
            continue
        assert ckpt.checksum(state) == reference  # a byte that holds no data (zip padding) changed nothing


# ----- the fault-injection test: SIGKILL at random points, resume, end bit for bit ----------------------------
EPOCHS = 10
KILL_TRAIN = ["--dataset", "digits", "--model", "mlp", "--hidden", "64", "--method", "rigl", "--delta-t", "20",
              "--batch-size", "16", "--threads", "1", "--epochs", str(EPOCHS), "--checkpoint-every-epochs", "1",
              "--progress", "off"]
#: a child that SIGKILLs itself halfway through its Nth torch.save (a checkpoint write cut short)
DIE_IN_SAVE = """
import os, signal, sys, torch
n, real = int(os.environ["DIE_IN_SAVE"]), torch.save
calls = []
def save(obj, f, *a, **kw):
    calls.append(f)
    real(obj, f, *a, **kw)
    if len(calls) == n:
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
torch.save = save
from sparseopt_edu.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _final(folder: Path):
    state = torch.load(folder / "checkpoint.pt", weights_only=False)
    history = History.from_dict(json.loads((folder / "history.json").read_text())).without_wall_clock()
    return state, history


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path):
    reference = cli("train", *KILL_TRAIN, "--name", "full", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    folder = tmp_path / "runs" / "killed"
    script = tmp_path / "die_in_save.py"
    script.write_text(DIE_IN_SAVE)
    rng = random.Random(14)
    kills = [("save", 1), ("time", None), ("save", 3), ("time", None), ("save", 2)]
    args = [*KILL_TRAIN, "--name", "killed"]
    killed = 0
    for i, (how, n) in enumerate(kills):
        argv = args if i == 0 else ["--name", "killed", "--resume", "--threads", "1", "--progress", "off"]
        if how == "save":  # the Nth checkpoint of this process is cut in half, then SIGKILL
            done = torch.load(folder / "checkpoint.pt", weights_only=False)["loop"]["epoch"] \
                if (folder / "checkpoint.pt").exists() else 0
            n = max(1, min(n, EPOCHS - done))  # a save per epoch left
            proc = subprocess.run([sys.executable, str(script), "train", *argv], cwd=tmp_path,
                                  env={**ENV, "DIE_IN_SAVE": str(n)}, capture_output=True, text=True, timeout=120)
            assert proc.returncode == -signal.SIGKILL, proc.stderr
            assert list(folder.glob(".tmp-*checkpoint.pt")), "the kill did not land inside a checkpoint write"
        else:  # a random moment after the run started
            proc = subprocess.Popen([str(BIN / "sparseopt-edu"), "train", *argv], cwd=tmp_path, env=ENV,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while proc.poll() is None and "training" not in (proc.stdout.readline() or "training"):
                pass
            time.sleep(rng.uniform(0.05, 0.5))
            proc.kill()
            proc.communicate(timeout=60)
        killed += proc.returncode == -signal.SIGKILL
        assert (folder / "config.json").is_file()
        if (folder / "checkpoint.pt").exists():
            ckpt.load(folder / "checkpoint.pt")  # never half a checkpoint in place: it loads and verifies
    assert killed >= 4
    resumed = cli("train", "--name", "killed", "--resume", "--threads", "1", "--progress", "off", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(folder.glob(".tmp-*"))
    (state_a, hist_a), (state_b, hist_b) = _final(tmp_path / "runs" / "full"), _final(folder)
    assert hist_a == hist_b and hist_b["reason"] == "done" and len(hist_b["epoch"]) == EPOCHS
    for state in (state_a, state_b):
        state["loop"].pop("epoch_time")  # wall clock
    for key in ("model", "masks", "optimizer", "dst", "loop", "train_loader", "lr_schedule", "rng"):
        assert ckpt.checksum({key: state_a[key]}) == ckpt.checksum({key: state_b[key]}), key


def test_signals_held_delays_ctrl_c_and_sigterm_to_the_end_of_the_block():
    """Inside ``signals_held`` a Ctrl-C or SIGTERM does not interrupt the block; at its end the handler in force
    acts (Python's Ctrl-C handler raises KeyboardInterrupt, a custom SIGTERM handler is called once)."""
    import os
    import signal

    from sparseopt_edu.train.runs import signals_held

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        finished = False
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # a handler would run here, between bytecodes
                finished = True
        assert finished and seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    finally:
        signal.signal(signal.SIGTERM, previous)
