"""Interactions with the course panels in a real JupyterLab: the kernel answers clicks and drags.

Assertions read text the kernel writes (figure titles, status lines, legend entries), never pixels. Each test
saves screenshots under test-artifacts/browser/ for a human to look at.
"""
from __future__ import annotations

import re
import time

import pytest

from .conftest import (
    SEL_SLIDER_HANDLE,
    assert_no_errors,
    drag_slider,
    open_notebook,
    run_all,
    screenshot,
    wait_widgets,
)
from .test_dashboard_voila import voila_server  # noqa: F401,F811  (fixture)

pytestmark = pytest.mark.browser

NB02 = "notebooks/02_batchnorm_meets_sparsity.ipynb"
NB04 = "notebooks/04_sparseopt.ipynb"
TITLE = ".js-plotly-plot .gtitle"


def _ratio_title(page, timeout_s: float = 60.0) -> tuple[float, float, str]:
    """(sparsity, ratio) from SkewPanel's title 'ratio at s=0.90: 3.05 (theory 3.16) · ...'."""
    loc = page.locator(TITLE, has_text="ratio at s=").first
    loc.wait_for(timeout=timeout_s * 1000)
    text = loc.text_content() or ""
    m = re.search(r"ratio at s=([0-9.]+): ([0-9.]+)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2)), text


def _wait_title_change(page, old: str, timeout_s: float = 60.0) -> None:
    page.wait_for_function(
        "([sel, old]) => Array.from(document.querySelectorAll(sel)).some("
        "e => e.textContent.includes('ratio at s=') && e.textContent !== old)",
        arg=[TITLE, old], timeout=timeout_s * 1000, polling=200)


def test_skew_panel_slider_and_norm(page, lab_server):
    open_notebook(page, lab_server, NB02)
    run_all(page, timeout_s=240)
    assert_no_errors(page)
    wait_widgets(page)
    s0, r0, t0 = _ratio_title(page)
    assert s0 == pytest.approx(0.90) and 2.4 < r0 < 3.8, t0
    screenshot(page, "interact_02_initial", full_page=True)
    fig = page.locator(".js-plotly-plot").first
    fig.scroll_into_view_if_needed()
    fig.screenshot(path=str(screenshot(page, "interact_02_fig3")))  # the figure itself, legend included
    legend = fig.locator(".legendtext").all_text_contents()
    assert len(legend) == 8 and not [t for t in legend if re.fullmatch(r"trace \d+", t.strip())], legend

    handle = page.locator(SEL_SLIDER_HANDLE).first
    handle.scroll_into_view_if_needed()
    drag_slider(page, handle, -120)  # towards lower sparsity
    _wait_title_change(page, t0)
    s1, r1, t1 = _ratio_title(page)
    assert s1 < s0 and r1 < r0, (t0, t1)

    page.locator("button.widget-toggle-button", has_text="no norm").first.click()
    page.locator(TITLE, has_text="no norm").first.wait_for(timeout=60_000)
    _, r2, t2 = _ratio_title(page)
    assert abs(r2 - 1.0) < 0.2, t2
    page.locator(".widget-html", has_text="norm none").first.wait_for(timeout=30_000)
    screenshot(page, "interact_02_no_norm", full_page=True)


def _status(page, text: str, timeout_s: float = 120.0) -> None:
    page.locator(".widget-html", has_text=text).first.wait_for(timeout=timeout_s * 1000)


def test_race_start_stop_change_optimizer_restart(page, lab_server):
    """Run All (the race cell trains to the end), then from the buttons: Start, Stop mid-run, switch to Adam,
    Start again: the Adam curves appear, the run finishes, nothing deadlocks and the figure survives."""
    open_notebook(page, lab_server, NB04)
    run_all(page, timeout_s=240)
    assert_no_errors(page)
    wait_widgets(page)
    page.locator(TITLE, has_text="final test acc").first.wait_for(timeout=30_000)
    screenshot(page, "interact_04_after_run_all")
    # five seeds: ten runs, long enough (even in fast mode) to press Stop in the middle
    seeds = page.locator(".widget-slider", has_text="seeds").locator(".noUi-handle").first
    seeds.scroll_into_view_if_needed()
    drag_slider(page, seeds, 300)
    _status(page, "seeds 5", timeout_s=30)
    start = page.locator("button.jupyter-button", has_text="Start").first
    start.click()
    _status(page, "running · step", timeout_s=60)
    page.locator("button.jupyter-button", has_text="Stop").first.click()
    _status(page, "stopped", timeout_s=60)
    screenshot(page, "interact_04_stopped")
    page.locator("button.widget-toggle-button", has_text="Adam vs SparseOpt+Adam").first.click()
    _status(page, "optimizer adam", timeout_s=30)
    start.click()
    page.locator(".js-plotly-plot .legendtext", has_text="SparseOpt+Adam").first.wait_for(timeout=60_000)
    _status(page, "all runs done", timeout_s=240)
    page.locator(TITLE, has_text="final test acc").first.wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot .main-svg").count() > 0
    screenshot(page, "interact_04_adam_done")


PROBE_CELLS = [
    '''import ipywidgets as W, threading, time
hits = []
b = W.Button(description="Probe")
def cb(_):
    hits.append(threading.current_thread().name)
b.on_click(cb)
display(b)''',
    '''t0 = time.time()
while time.time() - t0 < 15 and not hits:
    sum(i * i for i in range(20000))
print("LOOP END", "clicked during cell" if hits else "no click during cell")''',
]


@pytest.mark.xfail(reason="measured: the front end creates no comm subshell here, so a click waits for the busy "
                          "cell (see sparseopt_edu/widgets/controller.py); passes where subshells deliver comms",
                   strict=False)
def test_comm_reaches_busy_kernel(page, lab_server):
    """Does a widget click reach the kernel while a cell is busy (JupyterLab commsOverSubshells)?"""
    from .conftest import ARTIFACTS, REPO_ROOT, write_notebook

    nb = write_notebook(ARTIFACTS / "smoke" / "busy_probe.ipynb", PROBE_CELLS)
    open_notebook(page, lab_server, nb.relative_to(REPO_ROOT))
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.locator("button.jupyter-button", has_text="Probe").first.wait_for()
    time.sleep(2)
    page.locator("button.jupyter-button", has_text="Probe").first.click()
    out = page.locator(".jp-OutputArea-output", has_text="LOOP END").first
    out.wait_for(timeout=40_000)
    assert "clicked during cell" in (out.text_content() or "")


def test_voila_race_thread_mode(page, voila_server):  # noqa: F811
    """Under Voila (no subshells) the panel picks the thread mode, says so, and Start/Stop work."""
    from .conftest import REPO_ROOT
    from .test_dashboard_voila import open_dashboard

    server = voila_server(REPO_ROOT / NB04)
    open_dashboard(page, server)
    _status(page, "the notebook stays free meanwhile", timeout_s=180)  # thread mode (base.MODE_TEXT)
    # The figure is drawn; whether the load-time run's final title arrives depends on Voila dropping updates
    # made during execution (re-sent later, see base.RESEND_DELAYS_S): flaky on clean clones, tracked with
    # issue 16 item 2, so this test checks the drawn figure and then Start / Stop, which it exists for.
    page.locator(".js-plotly-plot .main-svg").first.wait_for(state="attached", timeout=120_000)
    screenshot(page, "voila_04_race_after_load", full_page=True)
    seeds = page.locator(".widget-slider", has_text="seeds").locator(".noUi-handle").first
    seeds.scroll_into_view_if_needed()
    drag_slider(page, seeds, 300)
    _status(page, "seeds 5", timeout_s=30)
    page.locator("button.jupyter-button", has_text="Start").first.click()
    _status(page, "running · step", timeout_s=60)
    page.locator("button.jupyter-button", has_text="Stop").first.click()
    _status(page, "stopped", timeout_s=60)
    screenshot(page, "voila_04_race_stopped", full_page=True)


def test_dst_panel_switch_method_and_run(page, lab_server):
    """Notebook 03: after Run All the DST figure shows topology updates; switching to SET and pressing Start
    trains again (worker thread) and the title reports SET's updates."""
    open_notebook(page, lab_server, "notebooks/03_dynamic_sparse_training.ipynb")
    run_all(page, timeout_s=240)
    assert_no_errors(page)
    wait_widgets(page)
    page.locator(TITLE, has_text="RigL").first.wait_for(timeout=30_000)
    page.locator(TITLE, has_text="update").first.wait_for(timeout=30_000)
    fig = page.locator(".js-plotly-plot").first
    fig.scroll_into_view_if_needed()
    screenshot(page, "interact_03_rigl")
    page.locator("button.widget-toggle-button", has_text="SET").first.click()
    _status(page, "DST set", timeout_s=30)
    page.locator("button.jupyter-button", has_text="Start").first.click()
    _status(page, "running", timeout_s=60)
    _status(page, "done", timeout_s=180)
    page.locator(TITLE, has_text="SET").first.wait_for(timeout=30_000)
    fig.scroll_into_view_if_needed()
    screenshot(page, "interact_03_set")
