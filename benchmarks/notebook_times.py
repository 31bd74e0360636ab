"""Execute every course notebook headless (nbclient) and time it: full mode, or fast mode with ``--fast``.

Runs wherever the notebook stack is importable (on a GPU machine, carry the wheels: see the device notes in
the README). Prints a table and writes JSON under benchmarks/results/.

    python benchmarks/notebook_times.py            # full mode (GPU when present)
    python benchmarks/notebook_times.py --fast     # SPARSEOPT_EDU_FAST=1 (what CI runs)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="set SPARSEOPT_EDU_FAST=1 for the kernels")
    parser.add_argument("--only", default="", help="comma-separated name prefixes, e.g. 02,04")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    if args.fast:
        os.environ["SPARSEOPT_EDU_FAST"] = "1"
    else:
        os.environ.pop("SPARSEOPT_EDU_FAST", None)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.machine()})"
    wanted = [p for p in args.only.split(",") if p]
    rows = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if wanted and not any(path.name.startswith(w) for w in wanted):
            continue
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
        t0 = time.perf_counter()
        error = None
        try:
            client.execute()
        except Exception as e:  # report and go on: one broken notebook should not hide the others' times
            error = f"{type(e).__name__}: {str(e).splitlines()[-1] if str(e) else ''}"[:300]
        rows.append({"notebook": path.stem, "seconds": round(time.perf_counter() - t0, 1), "error": error})
        print(f"{path.stem:<32} {rows[-1]['seconds']:>8.1f} s  {'OK' if error is None else error}", flush=True)
    mode = "fast" if args.fast else "full"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"notebook_times_{mode}_{'gpu' if torch.cuda.is_available() else 'cpu'}.json"
    target.write_text(json.dumps({"device": device, "mode": mode, "python": sys.version.split()[0],
                                  "torch": torch.__version__, "notebooks": rows}, indent=2) + "\n")
    print(f"saved {target}")
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
