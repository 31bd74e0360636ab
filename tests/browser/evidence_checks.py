"""Notebook 05 in a real JupyterLab draws the committed GPU evidence (measured points, not empty axes).

Called by ``test_notebooks_in_lab.py`` right after its Run All of notebook 05 (one run of the notebook, not
two). Every figure is photographed on its own (``test-artifacts/browser/05_figure_<i>.png``) so a person can
look at each plot; the checks are what a learner must see: the paper's bars, our diamonds, two seed-banded
curves, and the paired-difference markers with their interval bars.
"""
from __future__ import annotations

from .conftest import ARTIFACTS, SEL_PLOTLY_DRAWN

NOTEBOOK_STEM = "05_at_scale"


def check_evidence_figures(page) -> None:
    plots = page.locator(".js-plotly-plot")
    plots.first.wait_for(state="attached", timeout=30_000)
    page.locator(SEL_PLOTLY_DRAWN).first.wait_for(state="attached", timeout=30_000)
    n = plots.count()
    assert n >= 5, f"expected the Table 2 figures, the curves and the paired differences, found {n} plots"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        plot = plots.nth(i)
        plot.scroll_into_view_if_needed()
        plot.screenshot(path=str(ARTIFACTS / f"05_figure_{i}.png"))
    points = page.locator(".js-plotly-plot .scatterlayer .point")
    assert points.count() >= 30, f"only {points.count()} measured points drawn"
    bars = page.locator(".js-plotly-plot .barlayer .point")
    assert bars.count() >= 6  # the paper's bars: 3 sparsities x 2 arms, twice
    titles = " ".join(t or "" for t in page.locator(".js-plotly-plot .gtitle").all_text_contents())
    for words in ("ours (Fashion-MNIST, diamonds)", "Fashion-MNIST: test accuracy",
                  "SparseOpt - baseline, final test accuracy"):
        assert words in titles, titles
