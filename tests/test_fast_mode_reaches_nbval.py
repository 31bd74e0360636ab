"""The fast-mode switch must reach the kernel that nbval starts (else CI would run notebooks in full mode)."""
import os
import subprocess
import sys

import nbformat


def probe_notebook(path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(
        "# NBVAL_CHECK_OUTPUT\nimport os\nfrom sparseopt_edu import fast\nprint(os.environ.get('SPARSEOPT_EDU_FAST'), fast.is_fast())",
        execution_count=1,
    )
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1 True\n")]
    nb.cells = [cell]
    nbformat.write(nb, path)


def run_nbval(path, fast: bool):
    env = {k: v for k, v in os.environ.items() if k != "SPARSEOPT_EDU_FAST"}
    if fast:
        env["SPARSEOPT_EDU_FAST"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", str(path)], env=env, capture_output=True, text=True, timeout=300)


def test_fast_variable_reaches_the_nbval_kernel(tmp_path):
    path = tmp_path / "probe.ipynb"
    probe_notebook(path)
    assert run_nbval(path, fast=True).returncode == 0
    assert run_nbval(path, fast=False).returncode != 0  # the probe can fail: it really reads the kernel's env
