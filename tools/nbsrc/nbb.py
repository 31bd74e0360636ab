"""Tiny helpers to (re)build a course notebook from a Python script: md(...), code(...), save(path, cells).

The scripts next to this file (nbNN.py) are the editable source of the notebooks they write; each finds the
checkout from its own ``__file__``, so a build works on any clone. After a rebuild, run
tools/execute_notebook.py so the ``# NBVAL_CHECK_OUTPUT`` cells get their reference outputs (``make notebooks``
does both).

Run as a script to build several sources at once, optionally into another folder (the notebooks keep their
file names there; tests/test_notebook_sources.py builds into a temporary folder and compares with the
committed notebooks):

    python tools/nbsrc/nbb.py [--out DIR] [tools/nbsrc/nb02.py ...]     (default: every nbNN.py)
"""
from __future__ import annotations

import os
import runpy
import sys
import textwrap
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
# When set, save() writes into this folder (same file name) instead of the path the source names.
OUT_DIR_VAR = "NBB_OUT_DIR"

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def md(text: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str):
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"))


def sources() -> list[Path]:
    """Every notebook source next to this file, in course order."""
    return sorted(HERE.glob("nb[0-9][0-9].py"))


def save(path: str | Path, cells, out_dir: str | Path | None = None) -> Path:
    """Write ``cells`` as a notebook to ``path``, or to ``out_dir / path.name`` (default: $NBB_OUT_DIR)."""
    out_dir = out_dir if out_dir is not None else os.environ.get(OUT_DIR_VAR) or None
    path = Path(out_dir) / Path(path).name if out_dir is not None else Path(path)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i:02d}"  # stable ids: rebuilding gives a clean diff
    nb.cells = list(cells)
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
    print(f"wrote {path} ({len(cells)} cells)")
    return path


def build(source: str | Path, out_dir: str | Path | None = None) -> None:
    """Run one notebook source; with ``out_dir`` its notebook goes there instead of notebooks/."""
    saved = os.environ.get(OUT_DIR_VAR)
    if out_dir is not None:
        os.environ[OUT_DIR_VAR] = str(out_dir)
    try:
        runpy.run_path(str(source), run_name="__main__")
    finally:
        if saved is None:
            os.environ.pop(OUT_DIR_VAR, None)
        else:
            os.environ[OUT_DIR_VAR] = saved


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build course notebooks from their tools/nbsrc sources.")
    parser.add_argument("sources", nargs="*", type=Path, help="nbNN.py files (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the notebooks here, not to notebooks/")
    args = parser.parse_args(argv)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    for src in args.sources or sources():
        build(src, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
