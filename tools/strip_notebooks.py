#!/usr/bin/env python3
"""Notebook hygiene: strip outputs we must not commit, and check that committed notebooks follow the rules.

The rules (ENV.md "nbval with widgets and plotly"; issue 5):
- A cell whose source starts with ``# NBVAL_CHECK_OUTPUT`` keeps its outputs *and* its execution count: they
  are nbval's regression reference (a reference cell with outputs but no execution count makes nbval fail with
  "Unrun reference cell has outputs").
- Every other code cell has no outputs and no execution count.
- ``metadata.widgets`` (widget state: plotly's ~5 MB JS bundle) is deleted.
- Per-cell execution timestamps (``metadata.execution``, written by nbclient) are deleted: they only make diffs.
- A committed notebook is under 200 KB.

Usage:
    python tools/strip_notebooks.py [PATHS...]          strip in place (default: notebooks/*.ipynb)
    python tools/strip_notebooks.py --check [PATHS...]  change nothing; exit 1 listing every violation
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
MAX_BYTES = 200 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOB = "notebooks/*.ipynb"
# Cell metadata keys written by execution tools, never meaningful in the repository.
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def is_checked(cell) -> bool:
    """True for a code cell whose first line is the nbval marker (leading blank lines are allowed)."""
    return cell.get("cell_type") == "code" and _source(cell).lstrip().startswith(CHECK_MARKER)


def coalesce_streams(outputs: list) -> list:
    """Merge consecutive stream outputs of the same stream (their split depends on flush timing)."""
    merged: list = []
    for out in outputs:
        if (merged and out.get("output_type") == "stream" and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            prev = merged[-1]
            text = prev["text"] if isinstance(prev["text"], str) else "".join(prev["text"])
            more = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
            merged[-1] = type(prev)({**prev, "text": text + more})
        else:
            merged.append(out)
    return merged


def strip_notebook(nb) -> bool:
    """Strip ``nb`` (a dict-like notebook node) in place; return True when anything changed."""
    changed = False
    if "widgets" in nb.get("metadata", {}):
        del nb["metadata"]["widgets"]
        changed = True
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in VOLATILE_CELL_METADATA:
            if key in meta:
                del meta[key]
                changed = True
        if cell.get("cell_type") != "code":
            continue
        if is_checked(cell):
            merged = coalesce_streams(cell.get("outputs", []))
            if merged != cell.get("outputs", []):
                cell["outputs"] = merged
                changed = True
            continue
        if cell.get("outputs"):
            cell["outputs"] = []
            changed = True
        if cell.get("execution_count") is not None:
            cell["execution_count"] = None
            changed = True
    return changed


def notebook_violations(nb, size_bytes: int | None = None) -> list[str]:
    """Every rule the notebook breaks, as human-readable lines (empty list: clean)."""
    problems = []
    if "widgets" in nb.get("metadata", {}):
        problems.append("widget state present (metadata.widgets): run tools/strip_notebooks.py")
    if size_bytes is not None and size_bytes > MAX_BYTES:
        problems.append(f"file is {size_bytes / 1024:.0f} KB, over the {MAX_BYTES // 1024} KB limit")
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        first = _source(cell).strip().splitlines()[0][:60] if _source(cell).strip() else "<empty>"
        where = f"cell {index} ({first!r})"
        if is_checked(cell):
            if not cell.get("outputs"):
                problems.append(f"{where}: {CHECK_MARKER} cell has no outputs: execute the notebook "
                                "(tools/execute_notebook.py) so nbval has a reference")
            if cell.get("execution_count") is None:
                problems.append(f"{where}: {CHECK_MARKER} cell has no execution count (nbval would fail with "
                                "'Unrun reference cell has outputs')")
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    problems.append(f"{where}: {CHECK_MARKER} cell's reference output is an error "
                                    f"({out.get('ename')}: {out.get('evalue', '')[:80]})")
        else:
            if cell.get("outputs"):
                problems.append(f"{where}: unmarked cell has outputs: run tools/strip_notebooks.py")
            elif cell.get("execution_count") is not None:
                problems.append(f"{where}: unmarked cell has an execution count: run tools/strip_notebooks.py")
    return problems


def read(path: Path):
    return nbformat.read(str(path), as_version=nbformat.NO_CONVERT)


def write(nb, path: Path) -> None:
    nbformat.write(nb, str(path))


def strip_file(path: Path) -> bool:
    """Strip one file in place (rewritten only when something changed); return True when it changed."""
    nb = read(path)
    if strip_notebook(nb):
        write(nb, path)
        return True
    return False


def check_file(path: Path) -> list[str]:
    try:
        nb = read(path)
    except Exception as exc:  # noqa: BLE001 -- unreadable JSON is a violation to report, not a crash
        return [f"cannot read notebook: {type(exc).__name__}: {exc}"]
    return notebook_violations(nb, path.stat().st_size)


def default_paths() -> list[Path]:
    return sorted(REPO_ROOT.glob(DEFAULT_GLOB))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help=f"notebooks (default: {DEFAULT_GLOB})")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 listing every violation")
    args = parser.parse_args(argv)
    paths = args.paths or default_paths()
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print("no such notebook: " + ", ".join(map(str, missing)), file=sys.stderr)
        return 2
    if args.check:
        bad = 0
        for path in paths:
            for problem in check_file(path):
                print(f"{path}: {problem}")
                bad += 1
        if bad:
            print(f"{bad} violation(s) in {len(paths)} notebook(s)", file=sys.stderr)
            return 1
        print(f"{len(paths)} notebook(s) clean")
        return 0
    for path in paths:
        if strip_file(path):
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
