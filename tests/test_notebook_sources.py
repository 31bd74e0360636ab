"""Committed notebooks are what their sources build (issue 15 item 7), and the sources build on any checkout.

The notebooks are generated from tools/nbsrc/nbNN.py; an edit to one side only (a notebook fixed in Jupyter, a
source edited and never rebuilt) is caught here. Only what the source decides is compared: cell types, ids and
sources. Outputs come from executing the notebook (``make notebooks``) and are not built, so they are not
compared. Nothing is executed: building a notebook only runs its source script.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NBSRC = REPO_ROOT / "tools" / "nbsrc"


def _load_nbb():
    spec = importlib.util.spec_from_file_location("nbb", NBSRC / "nbb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nbb = _load_nbb()
SOURCES = nbb.sources()


def _cells(path: Path) -> list[tuple[str, str, str]]:
    nb = nbformat.read(str(path), as_version=4)
    return [(c.cell_type, c.get("id", ""), c.source if isinstance(c.source, str) else "".join(c.source))
            for c in nb.cells]


def _first_difference(built: list, committed: list) -> str:
    for i, (b, c) in enumerate(zip(built, committed)):
        if b != c:
            if b[:2] != c[:2]:
                return f"cell {i}: source builds {b[:2]}, notebook has {c[:2]}"
            diff = difflib.unified_diff(c[2].splitlines(), b[2].splitlines(), "notebook", "source", lineterm="", n=1)
            return f"cell {i} ({b[1]}) differs:\n" + "\n".join(list(diff)[:30])
    return f"the source builds {len(built)} cells, the notebook has {len(committed)}"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built")
    for src in SOURCES:
        nbb.build(src, out)
    return out


def test_every_notebook_has_a_source():
    names = {p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb")}
    targets = {m for src in SOURCES for m in re.findall(r'"(\d\d_[\w.-]+\.ipynb)"', src.read_text())}
    assert len(SOURCES) >= 7 and names == targets, f"notebooks without a source: {sorted(names - targets)}; " \
                                                   f"sources without a notebook: {sorted(targets - names)}"


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_committed_notebook_equals_its_source(src, built):
    (target,) = set(re.findall(r'"(\d\d_[\w.-]+\.ipynb)"', src.read_text()))
    committed, fresh = _cells(REPO_ROOT / "notebooks" / target), _cells(built / target)
    assert fresh == committed, (
        f"notebooks/{target} is out of date with tools/nbsrc/{src.name}: rebuild with "
        f"`make notebooks` (or python {src.relative_to(REPO_ROOT)} and tools/execute_notebook.py).\n"
        + _first_difference(fresh, committed))


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_source_names_no_absolute_path(src):
    """A source finds the checkout from its own __file__; a literal like "/work/main/..." builds only there."""
    literals = re.findall(r"""["'](/(?:work|home|tmp|Users)/[^"']*)["']""", src.read_text())
    assert not literals, f"{src.name} hard-codes {literals}; use Path(__file__).resolve().parents[2]"


def test_sources_build_in_another_checkout(tmp_path):
    """Copied elsewhere, without NBB_OUT_DIR, each source writes into *that* checkout's notebooks/."""
    clone = tmp_path / "elsewhere"
    shutil.copytree(NBSRC, clone / "tools" / "nbsrc", ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "notebooks").mkdir()
    env = {k: v for k, v in os.environ.items() if k != nbb.OUT_DIR_VAR}
    proc = subprocess.run([sys.executable, str(clone / "tools" / "nbsrc" / "nbb.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (clone / "notebooks").glob("*.ipynb"))
    assert written == sorted(p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb")), proc.stdout
