"""Every panel figure fits the notebook column at 1280 px and 1920 px windows (issue 16 item 12).

Panel figures are viz.COLUMN_WIDTH wide (an autosized FigureWidget is drawn at 700 px and resized only with the
window). The check reads the boxes the browser laid out, file browser open (the narrowest column at 1280 px): a
figure ends inside its cell's output area, and no button's label is cut. Screenshots of
every figure at both sizes go to test-artifacts/browser/fit_<width>_<n>.png.
"""
from __future__ import annotations

import pytest

from .conftest import (
    ARTIFACTS,
    SMOKE_DIR,
    assert_no_errors,
    open_notebook,
    run_all,
    wait_widgets,
    write_notebook,
)

pytestmark = pytest.mark.browser

CELLS = [
    "from sparseopt_edu.widgets import SkewPanel, SkewState, DSTPanel, DSTState, RacePanel, NeuronStepPanel",
    "SkewPanel(SkewState(seeds=1, n_samples=256, hidden=64, neurons=64)).display()",
    "dst = DSTPanel(DSTState.default(epochs=1, n_train=1024, n_test=128, hidden=32, delta_t=2, method='rigl'), "
    "mode='blocking')\ndst.display()\ndst.run()",
    "race = RacePanel(mode='blocking')\nrace.display()",
    "NeuronStepPanel().display()",
]

_BOXES_JS = """
() => Array.from(document.querySelectorAll('.jp-Notebook .js-plotly-plot')).map(p => {
  const out = p.closest('.jp-OutputArea-output').getBoundingClientRect();
  const svg = p.querySelector('.main-svg').getBoundingClientRect();
  return {left: svg.left, right: svg.right, width: svg.width, out_left: out.left, out_right: out.right,
          out_width: out.width};
})
"""


# every visible button whose label the browser cut (ipywidgets ends it with an ellipsis: text wider than the box)
_CUT_LABELS_JS = """
() => Array.from(document.querySelectorAll('.jp-Notebook button.jupyter-button'))
  .filter(b => b.offsetParent !== null && b.scrollWidth > b.clientWidth + 1).map(b => b.textContent.trim())
"""


@pytest.mark.parametrize("window", [(1280, 900), (1920, 1080)], ids=["1280", "1920"])
def test_panel_figures_fit_the_column(browser, lab_server, window):
    nb = write_notebook(SMOKE_DIR / "figure_fit.ipynb", CELLS)
    context = browser.new_context(viewport={"width": window[0], "height": window[1]})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        open_notebook(page, lab_server, nb)
        run_all(page, timeout_s=240)
        wait_widgets(page)
        assert_no_errors(page)
        page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .js-plotly-plot').length >= 4")
        page.wait_for_timeout(1500)  # plotly's autosize runs after the first draw
        boxes = page.evaluate(_BOXES_JS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for i, plot in enumerate(page.locator(".jp-Notebook .js-plotly-plot").all()):
            plot.scroll_into_view_if_needed()
            plot.screenshot(path=str(ARTIFACTS / f"fit_{window[0]}_{i}.png"))
        assert len(boxes) >= 4, boxes
        for i, b in enumerate(boxes):
            assert b["right"] <= b["out_right"] + 1, f"figure {i} runs past its column at {window}: {b}"
            assert b["width"] >= 600, f"figure {i} drawn too small at {window}: {b}"
        assert page.evaluate(_CUT_LABELS_JS) == [], f"button labels cut at {window}"
    finally:
        context.close()
