"""Every course notebook runs top to bottom in a real JupyterLab without an error, and its widgets render.

One test per ``notebooks/NN_*.ipynb``; a screenshot ``test-artifacts/browser/<name>.png`` is always saved for
a human to look at. Kernels see SPARSEOPT_EDU_FAST=1 (the lab_server fixture sets it), so notebooks must keep
their default runs short in that mode.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from . import evidence_checks as evidence_notebook
from .conftest import (
    REPO_ROOT,
    SEL_PLOTLY_DRAWN,
    SEL_WIDGET,
    assert_no_errors,
    open_notebook,
    run_all,
    screenshot,
)

pytestmark = pytest.mark.browser

# SPARSEOPT_BROWSER_NOTEBOOKS=<dir under the repo root> points the test at other notebooks (harness checks)
NOTEBOOK_DIR = Path(os.environ.get("SPARSEOPT_BROWSER_NOTEBOOKS", REPO_ROOT / "notebooks")).resolve()
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
RUN_ALL_TIMEOUT_S = 300


def _uses_widgets(path) -> bool:
    text = path.read_text(encoding="utf-8")
    return "widgets" in text or "FigureWidget" in text


@pytest.mark.parametrize(
    "nb_path",
    NOTEBOOKS or [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks yet"))],
    ids=[p.stem for p in NOTEBOOKS] or ["none"],
)
def test_notebook_runs_in_lab(page, lab_server, nb_path):
    t0 = time.perf_counter()
    open_notebook(page, lab_server, nb_path.relative_to(REPO_ROOT))
    try:
        run_s = run_all(page, timeout_s=RUN_ALL_TIMEOUT_S)
        assert_no_errors(page)
        if _uses_widgets(nb_path):
            rendered = page.locator(f"{SEL_WIDGET}, {SEL_PLOTLY_DRAWN}")
            rendered.first.wait_for(state="attached", timeout=30_000)
        if nb_path.stem == evidence_notebook.NOTEBOOK_STEM:
            evidence_notebook.check_evidence_figures(page)
    finally:
        screenshot(page, nb_path.stem)  # always, pass or fail
    print(f"\n[browser] {nb_path.name}: run all {run_s:.1f} s, total {time.perf_counter() - t0:.1f} s")
