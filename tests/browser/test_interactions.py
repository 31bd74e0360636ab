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
    wait_all_ran,
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
from sparseopt_edu.widgets.base import route_to_frontend_subshell
hits = {"plain": [], "routed": []}
plain, routed = W.Button(description="Plain probe"), W.Button(description="Routed probe")
plain.on_click(lambda _b: hits["plain"].append(threading.current_thread().name))
routed.on_click(lambda _b: hits["routed"].append(threading.current_thread().name))
print("ROUTE SET", route_to_frontend_subshell(routed))
display(W.HBox([plain, routed]))''',
    '''t0 = time.time()
while time.time() - t0 < 15 and not (hits["plain"] and hits["routed"]):
    sum(i * i for i in range(20000))
during = {k: list(v) for k, v in hits.items()}
print("LOOP END", during)''',
    '''print("AFTER CELL", hits)''',
]


def test_comm_reaches_busy_kernel(page, lab_server):
    """Does a widget click reach the kernel while a cell is busy (JupyterLab commsOverSubshells)?

    Measured (JupyterLab 4.6.6, ipykernel 7.4.0): a plain widget's click waits for the cell (ipykernel re-routes
    it to the main shell, see base.route_to_frontend_subshell); a click on a widget routed as the training
    panels route their controls runs during the cell, on the subshell thread the front end chose.
    """
    from .conftest import ARTIFACTS, REPO_ROOT, write_notebook

    nb = write_notebook(ARTIFACTS / "smoke" / "busy_probe.ipynb", PROBE_CELLS)
    open_notebook(page, lab_server, nb.relative_to(REPO_ROOT))
    _run_all_no_wait(page)
    page.locator("button.jupyter-button", has_text="Routed probe").first.wait_for()
    page.locator(".jp-OutputArea-output", has_text="ROUTE SET True").first.wait_for()
    time.sleep(2)  # the busy cell is running now
    page.locator("button.jupyter-button", has_text="Plain probe").first.click()
    page.locator("button.jupyter-button", has_text="Routed probe").first.click()
    out = page.locator(".jp-OutputArea-output", has_text="LOOP END").first
    out.wait_for(timeout=40_000)
    during = out.text_content() or ""
    after = page.locator(".jp-OutputArea-output", has_text="AFTER CELL").first
    after.wait_for(timeout=40_000)
    print(f"\n[browser] {during.strip()} | {(after.text_content() or '').strip()}")
    assert re.search(r"'routed': \['subshell-", during), during  # ran during the cell, on a subshell thread
    assert "'plain': []" in during, during  # the upstream re-route this project works around (not our code)


def _run_all_no_wait(page) -> None:
    """Run > Run All Cells and return at once (the cells run on while the test clicks)."""
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def _status_text(page, pattern: str) -> str:
    return page.evaluate(
        "(pat) => { const re = new RegExp(pat); const e = Array.from(document.querySelectorAll('.widget-html'))"
        ".find(e => re.test(e.textContent)); return e ? e.textContent : ''; }", pattern)


# In the page, as a learner who watches the run: once a status line reads "running · step N" with N >= the
# threshold, click Stop (a DOM click: the button's own handler, the same comm message as a mouse click) and note
# the time; then note when a status line first reads "stopped · step". In the page, because the fast-mode runs
# last about a second on an idle machine: a round trip through playwright between "step 10" and the click was
# long enough for the run to end first.
_STOP_WHEN_RUNNING_JS = """
(threshold) => {
  const w = window.__stopWatch = {};
  const statuses = () => Array.from(document.querySelectorAll('.widget-html'));
  const check = () => {
    if (w.click === undefined) {
      for (const e of statuses()) {
        const m = /running · step (\\d+)/.exec(e.textContent);
        const stop = Array.from(document.querySelectorAll('button.jupyter-button'))
          .find(b => b.textContent.trim() === 'Stop');
        if (m && +m[1] >= threshold && stop) {
          w.click = performance.now(); w.clickedAt = e.textContent; stop.click(); break;
        }
      }
    } else if (w.seen === undefined) {
      const texts = statuses().map(e => e.textContent);
      // "done" first: the run ended on its own and the click was handled after it (it waited for the cell)
      if (w.done === undefined) { const d = texts.find(t => /^\\s*done · step/.test(t)); if (d) w.done = d; }
      if (texts.some(t => /stopped · step/.test(t))) w.seen = performance.now();
    }
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


@pytest.mark.parametrize("nb, name", [(NB04, "04"), ("notebooks/03_dynamic_sparse_training.ipynb", "03")],
                         ids=["04_race", "03_dst"])
def test_stop_during_run_all_ends_the_cells_run(page, lab_server, nb, name):
    """Issue 16 item 3: Run All starts the panel's ``run()`` in a cell (the cell is busy while it trains); a
    Stop click then ends that run within 1 s: the status says stopped and its step count stops growing."""
    open_notebook(page, lab_server, nb)
    _run_all_no_wait(page)
    page.evaluate(_STOP_WHEN_RUNNING_JS, 10)  # click while it trains, past its first drawn update
    try:
        page.wait_for_function("() => window.__stopWatch.seen !== undefined", timeout=240_000, polling=50)
    except Exception:  # noqa: BLE001 -- playwright's TimeoutError: say what the page shows instead
        watch = page.evaluate("() => window.__stopWatch")
        raise AssertionError(f"no 'stopped' status after the Stop click (clicked: {'click' in watch}); the status "
                             f"reads: {_status_text(page, ' · step ')!r}") from None
    watch = page.evaluate("() => window.__stopWatch")
    took = (watch["seen"] - watch["click"]) / 1000
    first = _status_text(page, "stopped · step")
    page.locator(".widget-html", has_text="stopped · step").first.scroll_into_view_if_needed()
    screenshot(page, f"stop_run_all_{name}_stopped")
    # whatever the run's length: a Stop that waited for the cell shows the run's own end ("done") first
    assert "done" not in watch, f"the run ended on its own after the Stop click: {watch['done']}; then: {first}"
    assert took <= 1.0, f"the status said stopped {took:.2f} s after the click: {first} (clicked at: {watch['clickedAt']})"
    step = int(re.search(r"step (\d+)", first).group(1))
    clicked = int(re.search(r"running · step (\d+)", watch["clickedAt"]).group(1))
    wait_all_ran(page, timeout_s=240)  # the rest of Run All goes on after the stopped cell
    time.sleep(2)
    later = _status_text(page, "stopped · step")
    assert later and int(re.search(r"step (\d+)", later).group(1)) == step, (first, later)
    assert_no_errors(page)
    screenshot(page, f"stop_run_all_{name}_after_run_all")
    print(f"\n[browser] {name}: clicked at step {clicked}, stopped {took:.2f} s later at step {step}")


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
