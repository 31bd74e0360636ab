"""Every relative link in every notebook opens under the server `make lab` starts (issue 16 item 4).

JupyterLab resolves a Markdown link against the notebook's folder and opens it through the contents API, which
answers 404 for anything outside the server's root: with ``--notebook-dir=notebooks`` every ``../docs/...``
link was dead. This reads the root (and the start page) from the Makefile's own ``lab`` command, then checks
each link's target on the file system, inside that root.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
ROOT_FLAGS = ("--ServerApp.root_dir", "--ServerApp.notebook_dir", "--notebook-dir", "--NotebookApp.notebook_dir")
START_FLAGS = ("--LabApp.default_url", "--ServerApp.default_url")


def relative_links(nb_path: Path) -> list[str]:
    """Link targets in the notebook's Markdown cells that point at a file (no scheme, not a pure #anchor)."""
    nb = nbformat.read(str(nb_path), as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for target in MD_LINK.findall(cell.source) + HTML_LINK.findall(cell.source):
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or not parts.path:  # web links, mailto:, #anchors in the same page
                continue
            out.append(target)
    return out


def lab_command() -> list[str]:
    """The argv of the ``jupyter lab`` line that `make lab` runs (make -n: nothing is executed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "-s", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if re.search(r"jupyter[ -]lab\b", ln)]
    assert len(lines) == 1, out.stdout
    return shlex.split(lines[0])


def flag(argv: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
    return None


def served_root(argv: list[str]) -> Path:
    root = flag(argv, ROOT_FLAGS)
    return (ROOT / root).resolve() if root else ROOT  # make runs in the checkout: cwd is the default root


def test_notebooks_have_links_to_check():
    assert NOTEBOOKS and any(relative_links(p) for p in NOTEBOOKS)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_relative_link_opens_under_make_lab(nb_path):
    root = served_root(lab_command())
    assert nb_path.resolve().is_relative_to(root), f"`make lab` serves {root}, which does not hold {nb_path}"
    dead = []
    for target in relative_links(nb_path):
        path = unquote(urlsplit(target).path)
        resolved = (nb_path.parent / path).resolve()
        if not resolved.is_relative_to(root):
            dead.append(f"{target} -> {resolved} is outside the served root {root} (the server answers 404)")
        elif not resolved.exists():
            dead.append(f"{target} -> {resolved} does not exist")
    assert not dead, f"{nb_path.name}: dead links under `make lab`:\n" + "\n".join(dead)


def test_make_lab_opens_the_first_notebook():
    argv = lab_command()
    root = served_root(argv)
    start = flag(argv, START_FLAGS)
    assert start and start.startswith("/lab/tree/"), argv
    page = root / unquote(start[len("/lab/tree/"):])
    assert page.exists() and page.resolve() == (ROOT / "notebooks" / "00_start_here.ipynb").resolve(), page
