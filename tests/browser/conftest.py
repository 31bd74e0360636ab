"""Real-browser fixtures: one hermetic JupyterLab per session, Debian chromium through Playwright.

Why a browser at all: nbval runs no JavaScript, so only a browser proves that ipywidgets and plotly
FigureWidgets render and that a click reaches the kernel (see ../shared/design/ENV.md, "Real browser").

Fixtures
    lab_server (session) -> Server        hermetic ``jupyter lab`` on 127.0.0.1:<free port>, root = repo root
    browser    (session) -> playwright Browser (headless Debian chromium)
    page       (function) -> playwright Page (new context, 1400x1000); ``page.console_log`` lists messages
Helpers (import them: ``from tests.browser.conftest import open_notebook, run_all, ...``)
    open_notebook(page, server, nb_relpath, timeout_s=60)   fresh workspace, waits for an idle kernel
    run_all(page, timeout_s=180)                            Run > Run All Cells, waits until all ran
    assert_no_errors(page)                                  no error output, no stderr "Traceback"
    wait_widgets(page, plotly=True, timeout_s=60)           a widget view and a drawn plotly figure
    screenshot(page, name) -> Path                          test-artifacts/browser/<name>.png
    start_server(cmd, env, url, name) / stop_server(server) any other server (Voila uses them)
    hermetic_env(base_dir) -> dict                          env with every Jupyter dir inside base_dir
On a failing test that used ``page``, a screenshot and the console log go to test-artifacts/browser/failures/.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
FAILURES = ARTIFACTS / "failures"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 1000}

# Selectors verified against JupyterLab 4.6.6 / ipywidgets 8.1.9 / plotly 7.1.0.
SEL_KERNEL_IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
SEL_RUNNING_PROMPT = ".jp-InputPrompt"  # text is "[*]:" while queued or running
SEL_ERROR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
SEL_WIDGET = ".jupyter-widgets"
SEL_PLOTLY_DRAWN = ".js-plotly-plot .main-svg"
SEL_SLIDER_HANDLE = ".widget-slider .noUi-handle"


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.path)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)


# ------------------------------------------------------------------------------------------ server plumbing
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hermetic_env(base_dir: Path) -> dict[str, str]:
    """This environment with every Jupyter/IPython dir moved into ``base_dir`` and SPARSEOPT_EDU_FAST=1.

    A temp JUPYTER_DATA_DIR hides user kernelspecs, so ``python3`` resolves to this venv's own kernelspec
    (bare ``python`` argv, which jupyter_client replaces with the server's sys.executable).
    """
    env = dict(os.environ)
    for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTERLAB_DIR", "JUPYTER_PREFER_ENV_PATH",
                "JUPYTER_TOKEN", "JPY_SESSION_NAME"):
        env.pop(var, None)
    dirs = {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "IPYTHONDIR": "ipython",
        "JUPYTERLAB_SETTINGS_DIR": "user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
    }
    for var, sub in dirs.items():
        path = base_dir / sub
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    env["SPARSEOPT_EDU_FAST"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # silences a debugger warning in every kernel's stderr
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def jupyter_script(name: str) -> list[str]:
    """``<venv>/bin/<name>`` next to this Python, else ``python -m <module>``."""
    sibling = Path(sys.executable).parent / name
    if sibling.exists():
        return [str(sibling)]
    module = {"jupyter-lab": "jupyterlab", "voila": "voila"}[name]
    return [sys.executable, "-m", module]


@dataclass
class Server:
    name: str
    url: str  # base URL, no trailing slash
    port: int
    proc: subprocess.Popen
    base_dir: Path
    log_path: Path
    root_dir: Path = REPO_ROOT
    start_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())


def start_server(cmd: list[str], env: dict, url: str, name: str, base_dir: Path, port: int,
                 ready_path: str = "/api/status", timeout_s: float = 60.0, any_status: bool = False) -> Server:
    """Start ``cmd`` in its own process group, poll ``url + ready_path`` until HTTP 200.

    ``any_status=True``: any HTTP answer (404 included) counts as ready (Voila has no /api/status).
    """
    log_path = base_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 -- closed by stop_server()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO_ROOT), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(name=name, url=url, port=port, proc=proc, base_dir=base_dir, log_path=log_path)
    server.extra["log_handle"] = log
    deadline = t0 + timeout_s
    while True:
        if proc.poll() is not None:
            stop_server(server)
            raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url + ready_path, timeout=2) as resp:
                if resp.status == 200:
                    break
        except urllib.error.HTTPError:
            if any_status:
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.perf_counter() > deadline:
            stop_server(server)
            raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s at {url}:\n{server.log_tail()}")
        time.sleep(0.2)
    server.start_s = time.perf_counter() - t0
    return server


def stop_server(server: Server, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group (kernels included), then SIGKILL what is left."""
    proc = server.proc
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and proc.poll() is None:
        os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    if pgid is not None:
        try:  # kernels live in the same group; kill stragglers even if the server itself exited
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    handle = server.extra.pop("log_handle", None)
    if handle:
        handle.close()


def write_app_settings(target_dir: Path) -> Path:
    """Our shipped override as ``<target_dir>/overrides.json``.

    JupyterLab reads overrides only from its *app* settings dir (``LabApp.app_settings_dir``, default
    ``<sys.prefix>/share/jupyter/lab/settings``); an overrides.json in JUPYTERLAB_SETTINGS_DIR (the *user*
    settings dir) is ignored. So the hermetic server gets its own app settings dir holding exactly what we ship.
    """
    from sparseopt_edu.jupyter_setup import overrides

    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / "overrides.json"
    settings = overrides()
    # never autosave: a test that runs a committed notebook for longer than the autosave interval (120 s) would
    # otherwise write its outputs (plotly bundles, widget state) into the file under test
    settings["@jupyterlab/docmanager-extension:plugin"] = {"autosave": False}
    path.write_text(json.dumps(settings, indent=2))
    return path


def _require_browser_stack() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: run `make browser-deps` (apt-get install chromium, as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except Exception as exc:  # noqa: BLE001 -- ImportError, or a broken install
        pytest.skip(f"playwright cannot be imported ({exc}): pip install -e '.[dev]'")


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def browser_tmp() -> Path:
    base = Path(tempfile.mkdtemp(prefix="sparseopt-browser-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def lab_server(browser_tmp) -> Server:
    _require_browser_stack()
    base = browser_tmp / "lab"
    env = hermetic_env(base)
    app_settings = base / "app-settings"
    write_app_settings(app_settings)
    port = free_port()
    cmd = jupyter_script("jupyter-lab") + [
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={REPO_ROOT}",
        f"--LabApp.app_settings_dir={app_settings}",
        "--LabApp.news_url=",  # nothing may be fetched from the internet
        "--LabServerApp.workspaces_dir=" + env["JUPYTERLAB_WORKSPACES_DIR"],
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    server = start_server(cmd, env, f"http://127.0.0.1:{port}", "jupyterlab", base, port)
    server.extra["app_settings_dir"] = app_settings
    print(f"\n[browser] JupyterLab ready in {server.start_s:.1f} s at {server.url}")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def browser():
    _require_browser_stack()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    except Exception as exc:  # noqa: BLE001 -- reported in the skip reason / failure section
        pw.stop()
        pytest.skip(f"chromium could not be launched through playwright: {exc}")
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.console_log = []  # "type: text" lines, kept for the failure report
    pg.on("console", lambda msg: pg.console_log.append(f"{msg.type}: {msg.text}"))
    pg.on("pageerror", lambda err: pg.console_log.append(f"pageerror: {err}"))
    yield pg
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    pg = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if pg is None:
        return
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.split("::", 1)[-1])[:120]
    FAILURES.mkdir(parents=True, exist_ok=True)
    lines = [f"[browser] artifacts of this failure are in {FAILURES}/ ({name}.png, {name}.console.txt)"]
    try:
        pg.screenshot(path=str(FAILURES / f"{name}.png"), full_page=True, timeout=15_000)
    except Exception as exc:  # noqa: BLE001 -- reported in the skip reason / failure section
        lines.append(f"[browser] screenshot failed: {exc}")
    (FAILURES / f"{name}.console.txt").write_text("\n".join(getattr(pg, "console_log", [])) + "\n")
    try:  # a section under the traceback, and the folder in the one-line summary (-ra / short test summary)
        rep.longrepr.addsection("browser artifacts", "\n".join(lines))
        crash = rep.longrepr.reprcrash
        crash.message = f"{crash.message} [browser artifacts: {FAILURES}/]"
    except AttributeError:
        rep.sections.append(("browser artifacts", "\n".join(lines)))


# -------------------------------------------------------------------------------------------------- helpers
def _msg(text: str) -> str:
    return f"{text} (screenshot + console log on failure: {FAILURES}/)"


def open_notebook(page, server: Server, nb_relpath: str | Path, timeout_s: float = 60.0) -> None:
    """Open a notebook (path relative to the server root) in a fresh workspace; wait for an idle kernel.

    A fresh workspace per notebook matters: JupyterLab keeps earlier tabs in the DOM otherwise.
    """
    rel = Path(nb_relpath)
    if rel.is_absolute():
        rel = rel.relative_to(server.root_dir)
    quoted = urllib.request.pathname2url(rel.as_posix())
    page.goto(f"{server.url}/lab/workspaces/t{uuid.uuid4().hex[:12]}/tree/{quoted}?reset")
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible", timeout=timeout_s * 1000)
    # Trap: the execution indicator says data-status="idle" *before* a kernel exists (then initializing,
    # connecting, busy, idle). The status bar's "<kernel> | Idle" appears only once the kernel is connected.
    page.wait_for_function(_KERNEL_READY_JS, arg=SEL_KERNEL_IDLE, timeout=timeout_s * 1000, polling=100)


_KERNEL_READY_JS = """
(idleSel) => !!document.querySelector(idleSel) &&
  Array.from(document.querySelectorAll('.jp-StatusBar-Widget')).some(w => /\\| Idle\\b/.test(w.innerText))
"""

_PROMPTS_CHANGED_JS = """
([sel, before]) => {
  const now = Array.from(document.querySelectorAll('.jp-Notebook ' + sel)).map(p => p.innerText);
  return now.some(t => t.includes('[*]')) || now.join('|') !== before.join('|');
}
"""

_ALL_RAN_JS = """
([idleSel, promptSel]) => {
  const idle = document.querySelector(idleSel);
  if (!idle) return false;
  const prompts = Array.from(document.querySelectorAll('.jp-Notebook ' + promptSel));
  return !prompts.some(p => p.textContent.includes('[*]'));
}
"""


def wait_all_ran(page, timeout_s: float = 180.0, settle_s: float = 0.5) -> None:
    """Wait until the kernel is idle and no cell shows ``[*]``, twice in a row ``settle_s`` apart."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = max(deadline - time.monotonic(), 0.1)
        page.wait_for_function(_ALL_RAN_JS, arg=[SEL_KERNEL_IDLE, SEL_RUNNING_PROMPT], timeout=left * 1000,
                               polling=200)
        page.wait_for_timeout(settle_s * 1000)  # idle can flicker between two queued cells
        if page.evaluate(_ALL_RAN_JS, [SEL_KERNEL_IDLE, SEL_RUNNING_PROMPT]):
            return
        if time.monotonic() > deadline:
            raise AssertionError(_msg(f"cells still running after {timeout_s:.0f} s"))


def run_all(page, timeout_s: float = 180.0) -> float:
    """Run > Run All Cells (role-based selectors; CSS menu selectors don't work), wait until done.

    Returns the seconds it took.
    """
    t0 = time.perf_counter()
    page.wait_for_function(_KERNEL_READY_JS, arg=SEL_KERNEL_IDLE, timeout=60_000, polling=100)
    before = page.locator(f".jp-Notebook {SEL_RUNNING_PROMPT}").all_inner_texts()
    for attempt in (1, 2):
        page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})  # focus the notebook
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        # Started = some cell shows [*] or any prompt changed (a very fast notebook is done before we look).
        try:
            page.wait_for_function(_PROMPTS_CHANGED_JS, arg=[SEL_RUNNING_PROMPT, before], timeout=10_000,
                                   polling=50)
            break
        except Exception:  # noqa: BLE001 -- playwright TimeoutError: the command was not taken; retry once
            page.keyboard.press("Escape")
            if attempt == 2:
                raise AssertionError(_msg("Run > Run All Cells started no cell (twice)")) from None
    wait_all_ran(page, timeout_s=timeout_s)
    return time.perf_counter() - t0


def error_outputs(page) -> list[str]:
    """Texts of error outputs (tracebacks) and of stderr streams that contain 'Traceback'.

    In JupyterLab 4.6 an ``error`` output renders with the same mime type as a stderr stream
    (``application/vnd.jupyter.stderr``); a traceback's text contains the exception line.
    """
    texts = page.locator(SEL_ERROR_OUTPUT).all_inner_texts()
    return [t for t in texts if "Traceback" in t or re.search(r"^\w+(Error|Exception)\b", t, re.MULTILINE)]


def assert_no_errors(page) -> None:
    errors = error_outputs(page)
    assert not errors, _msg("error output in the notebook:\n" + "\n---\n".join(e[-2000:] for e in errors))


def wait_widgets(page, plotly: bool = True, timeout_s: float = 60.0) -> None:
    """Wait for a rendered ipywidget view, and (``plotly=True``) for a drawn plotly figure."""
    page.locator(SEL_WIDGET).first.wait_for(state="visible", timeout=timeout_s * 1000)
    if plotly:
        page.locator(SEL_PLOTLY_DRAWN).first.wait_for(state="attached", timeout=timeout_s * 1000)


def screenshot(page, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# ----------------------------------------------------------------------------------- the smoke notebook
SMOKE_DIR = ARTIFACTS / "smoke"  # under the lab server's root (repo root), git-ignored

SMOKE_CELLS = [
    "import os, sys\nprint('KERNEL', sys.prefix, 'FAST', os.environ.get('SPARSEOPT_EDU_FAST'))",
    '''import ipywidgets as widgets
import plotly.graph_objects as go

slider = widgets.IntSlider(value=2, min=1, max=10, description="freq", continuous_update=False)
button = widgets.Button(description="Retitle", button_style="primary")
label = widgets.Label(value="clicks: 0")
xs = list(range(40))
# configured fully before display(): Voila loses FigureWidget changes made after display during execution
fig = go.FigureWidget(data=[go.Scatter(x=xs, y=[(i * 2) % 7 for i in xs], mode="lines+markers")],
                      layout=dict(title=dict(text="freq 2"), width=700, height=380))
clicks = {"n": 0}

def on_slider(change):
    with fig.batch_update():
        fig.data[0].y = [(i * change["new"]) % 7 for i in xs]
        fig.layout.title.text = f"freq {change['new']}"
    label.value = f"slider: {change['new']}"

def on_click(_):
    clicks["n"] += 1
    fig.layout.title.text = f"clicked {clicks['n']}"
    label.value = f"clicks: {clicks['n']}"

slider.observe(on_slider, names="value")
button.on_click(on_click)
display(widgets.VBox([widgets.HBox([slider, button, label]), fig]))''',
    "print('done')",
]


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells, no outputs, python3 kernel."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="session")
def smoke_notebook() -> Path:
    """The widget + FigureWidget + button smoke notebook, written under the server root."""
    return write_notebook(SMOKE_DIR / "smoke_widgets.ipynb", SMOKE_CELLS)


def drag_slider(page, handle_locator, dx: float) -> None:
    """Drag a noUiSlider handle (ipywidgets 8 sliders) by ``dx`` pixels with real mouse events."""
    # Wait until the handle stops moving (figures and outputs above it can still be laying out) and nothing
    # covers its centre, so the mouse goes down on the handle and not on a neighbour (a dropdown, say).
    box, x, y = None, 0.0, 0.0
    for _ in range(40):
        handle_locator.scroll_into_view_if_needed()
        first = handle_locator.bounding_box()
        page.wait_for_timeout(150)
        box = handle_locator.bounding_box()
        assert box, _msg("slider handle has no bounding box (not rendered?)")
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        on_handle = page.evaluate(
            "([x, y]) => { const e = document.elementFromPoint(x, y); return !!(e && e.closest('.noUi-handle')); }",
            [x, y])
        if first == box and on_handle:
            break
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y, steps=5)
    page.mouse.move(x + dx, y, steps=5)
    page.mouse.up()
