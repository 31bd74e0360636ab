"""Tiny helpers to (re)build a course notebook from a Python script: md(...), code(...), save(path, cells).

The scripts next to this file are the editable source of the notebooks they write; after a rebuild, run
tools/execute_notebook.py so the ``# NBVAL_CHECK_OUTPUT`` cells get their reference outputs.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def md(text: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str):
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"))


def save(path: str | Path, cells) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i:02d}"  # stable ids: rebuilding gives a clean diff
    nb.cells = list(cells)
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
    print(f"wrote {path} ({len(cells)} cells)")
