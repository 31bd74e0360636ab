#!/usr/bin/env python3
"""Execute notebooks headless (nbclient, this venv's python3 kernel), time them, then strip them in place.

Fast mode by default: the kernel sees SPARSEOPT_EDU_FAST=1 (small sizes, CPU, pinned threads), which is what
nbval runs in CI, so the outputs kept in ``# NBVAL_CHECK_OUTPUT`` cells are the regression reference nbval
compares against. ``--full`` removes the variable from the kernel's environment (full sizes, GPU if present).

After a successful run the notebook is stripped with tools/strip_notebooks.py rules (outputs and execution
counts kept only in checked cells, widget state deleted) and written back. A failing notebook is not written
(unless ``--keep-failed``): the error is printed and the exit status is 1.

Usage:
    python tools/execute_notebook.py notebooks/01_sparse_networks.ipynb [more.ipynb ...] [--full]
        [--timeout 600] [--no-strip] [--output OUT.ipynb] [--keep-failed]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
FAST_VAR = "SPARSEOPT_EDU_FAST"


def _ensure_venv() -> None:
    """Re-run under the project's venv: the kernel is launched with this process's interpreter."""
    if os.environ.get("SPARSEOPT_EDU_NO_REEXEC") or not VENV_PYTHON.exists():
        return
    if Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        os.environ["SPARSEOPT_EDU_NO_REEXEC"] = "1"
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])


def kernel_env(full: bool) -> dict[str, str]:
    """The environment the kernel inherits."""
    env = dict(os.environ)
    env.pop("SPARSEOPT_EDU_NO_REEXEC", None)
    if full:
        env.pop(FAST_VAR, None)
    else:
        env[FAST_VAR] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # else a debugger warning lands in cells' stderr
    return env


def execute(path: Path, *, full: bool = False, timeout: int = 600, strip: bool = True,
            output: Path | None = None, keep_failed: bool = False) -> float:
    """Execute one notebook; return wall seconds. Raises nbclient's CellExecutionError on a failing cell."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from strip_notebooks import strip_notebook

    nb = nbformat.read(str(path), as_version=4)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(kernel_env(full))  # jupyter_client hands this process's environment to the kernel
    # IPC sockets in a private folder, not TCP ports: several kernels started at once on one machine (parallel
    # test runs, other sessions) can otherwise race for the same "free" port and receive each other's messages.
    sockets = tempfile.mkdtemp(prefix="sparseopt-kernel-")
    km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "k"))
    client = NotebookClient(
        nb, km=km, timeout=timeout, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except BaseException:
        if keep_failed:
            nbformat.write(nb, str(output or path))
        raise
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(sockets, ignore_errors=True)
    seconds = time.perf_counter() - t0
    if strip:
        strip_notebook(nb)
    nbformat.write(nb, str(output or path))
    return seconds


def main(argv: list[str] | None = None) -> int:
    _ensure_venv()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--full", action="store_true", help=f"do not set {FAST_VAR}=1 (full sizes)")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds (default 600)")
    parser.add_argument("--no-strip", action="store_true", help="write all outputs back (debugging only)")
    parser.add_argument("--output", type=Path, help="write here instead of in place (one notebook only)")
    parser.add_argument("--keep-failed", action="store_true", help="write a failing notebook with its outputs")
    args = parser.parse_args(argv)
    if args.output and len(args.notebooks) != 1:
        parser.error("--output takes exactly one notebook")
    mode = "full mode" if args.full else f"fast mode ({FAST_VAR}=1)"
    failed = 0
    for path in args.notebooks:
        if not path.is_file():
            print(f"{path}: no such notebook", file=sys.stderr)
            failed += 1
            continue
        try:
            seconds = execute(path, full=args.full, timeout=args.timeout, strip=not args.no_strip,
                              output=args.output, keep_failed=args.keep_failed)
        except Exception as exc:  # noqa: BLE001 -- CellExecutionError, timeouts, dead kernels: report, go on
            print(f"{path}: FAILED in {mode}\n{exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: executed in {seconds:.1f} s ({mode})" + ("" if args.no_strip else ", stripped"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
