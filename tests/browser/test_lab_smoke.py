"""The browser harness itself works: overrides apply, the kernel is this venv, widgets render and respond."""
from __future__ import annotations

import sys
import time

import pytest

from .conftest import (
    SEL_PLOTLY_DRAWN,
    SEL_SLIDER_HANDLE,
    SMOKE_DIR,
    assert_no_errors,
    drag_slider,
    error_outputs,
    open_notebook,
    run_all,
    screenshot,
    wait_widgets,
    write_notebook,
)

pytestmark = pytest.mark.browser
BARE_PYTHON = {"python", "python3", "python{}.{}".format(*sys.version_info[:2])}


def _served_default(server, plugin: str, key: str):
    """The default JupyterLab serves for a setting: the schema default with overrides.json merged in.

    (The REST answer has no "composite"; the frontend computes it from this default and the user settings,
    which are empty in the hermetic settings dir.)
    """
    answer = server.get_json(f"/lab/api/settings/{plugin}")
    assert answer["settings"] == {}, f"user settings are not empty: {answer['settings']}"
    return answer["schema"]["properties"][key]["default"]


def test_shipped_override_is_what_lab_serves(lab_server):
    plugin = "@jupyterlab/apputils-extension:kernels-settings"
    assert _served_default(lab_server, plugin, "commsOverSubshells") == "perCommTarget"
    # perCommTarget is also JupyterLab 4.6's own default: the notification values (schema defaults "none"
    # and true) prove that our override file is the one applied
    plugin = "@jupyterlab/apputils-extension:notification"
    assert _served_default(lab_server, plugin, "fetchNews") == "false"
    assert _served_default(lab_server, plugin, "checkForUpdates") is False


def test_python3_kernelspec_is_this_environment(lab_server):
    specs = lab_server.get_json("/api/kernelspecs")
    assert specs["default"] == "python3"
    argv0 = specs["kernelspecs"]["python3"]["spec"]["argv"][0]
    # a bare "python" is replaced by the server's sys.executable (this venv) when the kernel starts
    assert argv0 in BARE_PYTHON or argv0.startswith(sys.prefix), argv0


def test_smoke_widgets_in_lab(page, lab_server, smoke_notebook):
    t0 = time.perf_counter()
    open_notebook(page, lab_server, smoke_notebook)
    t_open = time.perf_counter() - t0
    t_run = run_all(page, timeout_s=90)
    assert_no_errors(page)
    wait_widgets(page)
    # the kernel is this venv's Python and sees SPARSEOPT_EDU_FAST=1
    page.get_by_text(f"KERNEL {sys.prefix} FAST 1").wait_for()

    handle = page.locator(SEL_SLIDER_HANDLE).first
    drag_slider(page, handle, dx=50)
    page.locator(".widget-label", has_text="slider:").wait_for()
    value = page.locator(".widget-readout").first.inner_text()
    assert value != "2", "the slider did not move"
    page.locator(SEL_PLOTLY_DRAWN.replace(".main-svg", ".gtitle"), has_text=f"freq {value}").wait_for()

    page.get_by_role("button", name="Retitle").click()
    page.locator(".widget-label", has_text="clicks: 1").wait_for()
    page.locator(".js-plotly-plot .gtitle", has_text="clicked 1").wait_for()
    screenshot(page, "smoke_lab")
    print(f"\n[browser] lab smoke: open {t_open:.1f} s, run all {t_run:.1f} s, "
          f"total {time.perf_counter() - t0:.1f} s")


def test_error_output_is_detected(page, lab_server):
    nb = write_notebook(SMOKE_DIR / "smoke_error.ipynb", ["x = 1", "1 / 0", "print('not reached')"])
    open_notebook(page, lab_server, nb)
    run_all(page, timeout_s=60)  # Run All stops at the error; the wait must still end
    errors = error_outputs(page)
    assert errors and "ZeroDivisionError" in errors[0]
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        assert_no_errors(page)
