"""The issue-17 benchmarks run in their smoke mode (tiny sizes, CPU) and write what they promise."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_peer_race_smoke(tmp_path):
    race = load("peer_race")
    assert race.main(["--smoke", "--out", str(tmp_path), "--peers", "dense,rigltorch,loop,graphs,compiled"]) == 0
    (path,) = tmp_path.glob("peer_race-smoke-*.json")
    rows = json.loads(path.read_text())["rows"]
    assert set(rows) == set(race.PEERS)
    assert "skipped" in rows["Trainer (compiled)"]  # compile runs on CUDA only
    if importlib.util.find_spec("rigl_torch") is None:
        assert rows["rigl-torch"] == {"skipped": "skipped: not installed (pip install rigl-torch==0.5.2)"}
    for name in ("dense", "sparseopt-edu loop", "Trainer (graphs)"):
        row = rows[name]
        assert len(row["epoch_times_s"]) == 2 and row["density_ok"], row
    for name in ("sparseopt-edu loop", "Trainer (graphs)"):
        assert rows[name]["pruned_weights_zero"] is True and rows[name]["topology_updates"] == 2
        assert abs(rows[name]["density"] - 0.1) < 1e-3


def test_step_overhead_verdict_refuses_a_gap_inside_the_spread():
    step = load("step_overhead")
    noisy = step.summarise({"dense": [10.0, 10.5, 9.5, 10.2], "rigl+sparseopt": [10.3, 10.1, 10.6, 9.9]})
    assert not noisy["resolved"] and "cannot tell" in noisy["verdict"]
    clear = step.summarise({"dense": [10.0, 10.1, 10.05, 10.02], "rigl+sparseopt": [11.0, 11.1, 11.05, 11.02]})
    assert clear["resolved"] and abs(clear["overhead_pct"] - 10.0) < 0.5


def test_resnet20_limit_groups_the_kernels_of_a_step():
    """The kernel groups the limit benchmark reports: a fused SGD is the optimizer, cuDNN's wgrad a convolution,
    an Inductor kernel fused Triton, and an unknown name is 'other' (never silently dropped)."""
    limit = load("resnet20_limit")
    assert limit.group_of("void at::native::fused_sgd_kernel<float>") == "optimizer"
    assert limit.group_of("sm90_xmma_wgrad_indexed_implicit_gemm_bf16bf16") == "convolution"
    assert limit.group_of("triton_red_fused__native_batch_norm_legit_functional_4") == "fused (Triton)"
    assert limit.group_of("void at::native::batch_norm_collect_statistics_channels_last_kernel") == "batch norm"
    assert limit.group_of("Memset (Device)") == "other"
