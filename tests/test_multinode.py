"""The Trainer under torchrun (gloo, CPU): every rank holds the same masks, weights, SparseOpt scales and optimizer
state, bit for bit, at every topology update; and the README's multi-node recipe, rehearsed on one host.

tools/rank_digests.py writes one line per rank and point (start, each DST update, end) with a sha256 of each
tensor; the rank files are compared here, not only by the tool itself.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
needs_torchrun = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed next to this Python")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_torchrun
def test_ranks_identical_at_every_topology_update(tmp_path):
    """AdamW (two state tensors per weight), two sparse hidden layers, an update every 10 steps: 6 updates."""
    flags = ["--dataset", "digits", "--model", "mlp", "--hidden", "32", "--depth", "2", "--method", "rigl",
             "--optimizer", "adamw", "--lr", "0.003", "--delta-t", "10", "--batch-size", "32", "--epochs", "4",
             "--threads", "1", "--progress", "false"]
    result = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", str(ROOT / "tools" / "rank_digests.py"),
                             "--out", "digests", *flags], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    a, b = read(tmp_path / "digests" / "rank0.jsonl"), read(tmp_path / "digests" / "rank1.jsonl")
    assert [x["kind"] for x in a] == [x["kind"] for x in b]
    updates = [x for x in a if x["kind"] == "update"]
    assert len(updates) >= 5 and a[-1]["kind"] == "end" and a[-1]["reason"] == "done"
    assert sum(1 for u in updates if u["record"].get("changed")) >= 2  # updates that moved connections
    kinds = {key.split("/")[0] for key in updates[0]["digests"]}
    assert kinds == {"weight", "mask", "scale", "optimizer"}
    assert sum(key.startswith("optimizer/") for key in updates[0]["digests"]) >= 2 * sum(
        key.startswith("weight/") for key in updates[0]["digests"])  # exp_avg and exp_avg_sq of every parameter
    for x, y in zip(a, b):
        assert x["step"] == y["step"]
        assert x["digests"] == y["digests"], f"ranks differ at step {x['step']}: " + ", ".join(
            k for k in x["digests"] if x["digests"][k] != y["digests"].get(k))
        assert x["inactive_max"] == y["inactive_max"] == {"weight": 0.0, "optimizer_state": 0.0}
    assert a[0]["shard"]["train_images"] == b[0]["shard"]["train_images"]
    assert a[0]["shard"]["digest"] != b[0]["shard"]["digest"]  # each rank its own share of the data
    assert "rank_digests: OK" in result.stdout and result.stdout.count("ranks agree bit for bit") == len(a)


@needs_torchrun
def test_multinode_rehearsal(tmp_path):
    """tools/rehearse_multinode.py: two torchrun commands (node 0, node 1) meet on localhost and train."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "rehearse_multinode.py"), "--workdir",
                             str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "FAIL " not in result.stdout and result.stdout.count("PASS ") == 10
    assert "rehearsal OK" in result.stdout
    assert (tmp_path / "node0" / "runs" / "multinode" / "checkpoint.pt").exists()
    assert not (tmp_path / "node1" / "runs").exists()  # only global rank 0 writes
