"""Committed notebooks follow the hygiene rules (tools/strip_notebooks.py), and the strip logic is right."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def _load_tool():
    spec = importlib.util.spec_from_file_location("strip_notebooks", REPO_ROOT / "tools" / "strip_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


strip = _load_tool()


@pytest.mark.parametrize("path", NOTEBOOKS or [pytest.param(None, marks=pytest.mark.skip("no notebooks"))],
                         ids=[p.name for p in NOTEBOOKS] or ["none"])
def test_committed_notebook_is_clean(path):
    problems = strip.check_file(path)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_every_notebook_has_a_checked_cell():
    """Each course notebook pins at least one number (issue 5): a notebook with none is untested by nbval."""
    missing = [p.name for p in NOTEBOOKS if not any(strip.is_checked(c) for c in nbformat.read(str(p), 4).cells)]
    assert not missing, f"no # NBVAL_CHECK_OUTPUT cell in: {missing}"


# ---------------------------------------------------------------------------------------- unit: strip logic
def _stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def _dirty_notebook():
    nb = nbformat.v4.new_notebook()
    checked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('ratio 3.1 ✓')", execution_count=3,
                                        outputs=[_stream("ratio 3.1 ✓\n")])
    checked.metadata["execution"] = {"iopub.execute_input": "2026-11-26T04:00:00Z"}
    plain = nbformat.v4.new_code_cell("fig", execution_count=4,
                                      outputs=[nbformat.v4.new_output("display_data", data={"text/plain": "x"})])
    counted = nbformat.v4.new_code_cell("x = 1", execution_count=5)
    text = nbformat.v4.new_markdown_cell("# NBVAL_CHECK_OUTPUT in markdown means nothing")
    nb.cells = [checked, plain, counted, text]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"x": "y" * 1000}}}
    return nb


def test_strip_keeps_only_checked_cells_and_drops_widget_state():
    nb = _dirty_notebook()
    assert strip.strip_notebook(nb) is True
    checked, plain, counted, _ = nb.cells
    assert checked.execution_count == 3 and checked.outputs[0]["text"] == "ratio 3.1 ✓\n"
    assert "execution" not in checked.metadata
    assert plain.outputs == [] and plain.execution_count is None
    assert counted.execution_count is None
    assert "widgets" not in nb.metadata
    assert strip.notebook_violations(nb) == []
    assert strip.strip_notebook(nb) is False  # idempotent


def test_marker_detection():
    assert strip.is_checked(nbformat.v4.new_code_cell("\n# NBVAL_CHECK_OUTPUT\nprint(1)"))
    assert not strip.is_checked(nbformat.v4.new_code_cell("print(1)  # NBVAL_CHECK_OUTPUT"))
    assert not strip.is_checked(nbformat.v4.new_markdown_cell("# NBVAL_CHECK_OUTPUT"))


def test_check_lists_every_violation():
    nb = _dirty_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2)"))  # never executed
    problems = strip.notebook_violations(nb, size_bytes=300 * 1024)
    text = "\n".join(problems)
    assert "widget state" in text
    assert "300 KB" in text
    assert "cell 1" in text and "unmarked cell has outputs" in text
    assert "cell 2" in text and "execution count" in text
    assert "cell 4" in text and "has no outputs" in text and "no execution count" in text


def test_checked_cell_with_error_output_is_a_violation():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\n1/0", execution_count=1, outputs=[
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])]
    assert any("ZeroDivisionError" in p for p in strip.notebook_violations(nb))


def test_cli_strip_then_check(tmp_path):
    path = tmp_path / "dirty.ipynb"
    nbformat.write(_dirty_notebook(), str(path))
    tool = [sys.executable, str(REPO_ROOT / "tools" / "strip_notebooks.py")]
    before = subprocess.run([*tool, "--check", str(path)], capture_output=True, text=True, check=False)
    assert before.returncode == 1
    assert "widget state present" in before.stdout and "unmarked cell has outputs" in before.stdout
    subprocess.run([*tool, str(path)], check=True, capture_output=True)
    after = subprocess.run([*tool, "--check", str(path)], capture_output=True, text=True, check=False)
    assert after.returncode == 0, after.stdout
    nb = nbformat.read(str(path), 4)
    assert nb.cells[0].outputs and nb.cells[0].execution_count == 3
    assert path.stat().st_size < 5000  # the 1 KB of fake widget state is gone


def test_cli_missing_file_is_an_error(tmp_path):
    tool = [sys.executable, str(REPO_ROOT / "tools" / "strip_notebooks.py")]
    result = subprocess.run([*tool, "--check", str(tmp_path / "nope.ipynb")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2 and "no such notebook" in result.stderr


# ---------------------------------------------------------------------------------- tools/execute_notebook.py
def _tiny_notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import os, sys\nprint('noise')"),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('fast:', os.environ.get('SPARSEOPT_EDU_FAST'))\n"
                                  "print('prefix ok:', sys.prefix == " + repr(sys.prefix) + ")"),
    ]
    nbformat.write(nb, str(path))


@pytest.mark.slow
@pytest.mark.parametrize("full", [False, True], ids=["fast", "full"])
def test_execute_tool_sets_fast_mode_and_strips(tmp_path, full):
    path = tmp_path / "tiny.ipynb"
    _tiny_notebook(path)
    cmd = [sys.executable, str(REPO_ROOT / "tools" / "execute_notebook.py"), str(path)] + (["--full"] if full else [])
    env = {k: v for k, v in __import__("os").environ.items() if k != "SPARSEOPT_EDU_FAST"}
    if full:
        env["SPARSEOPT_EDU_FAST"] = "1"  # --full must remove it from the kernel's environment
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    assert "executed in" in result.stdout and ("full mode" if full else "fast mode") in result.stdout
    nb = nbformat.read(str(path), 4)
    plain, checked = nb.cells
    assert plain.outputs == [] and plain.execution_count is None
    assert checked.execution_count == 2
    text = "".join(o.get("text", "") for o in checked.outputs)
    assert text == f"fast: {None if full else '1'}\nprefix ok: True\n"  # one merged stream, this venv's kernel
    assert strip.notebook_violations(nb) == []


@pytest.mark.slow
def test_execute_tool_reports_a_failing_notebook_and_leaves_it_alone(tmp_path):
    path = tmp_path / "bad.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nbformat.write(nb, str(path))
    before = path.read_text()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "execute_notebook.py"), str(path)],
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 1
    assert "FAILED" in result.stderr and "boom" in result.stderr
    assert path.read_text() == before
