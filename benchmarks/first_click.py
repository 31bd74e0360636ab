"""Seconds from a fresh kernel's first Start click to its first training step and first drawn point (04, 03).

Issue 16 item 17, for notebook 04's race panel and notebook 03's DST panel.

Each measurement is a fresh process (``--child``), as a learner's new kernel: it imports what the notebook's
first cell imports (torch, sparseopt_edu.diagnostics, the panel), builds the panel with the notebook's defaults
in thread mode (a Start click always trains in a worker thread), displays it (``_repr_mimebundle_``, as the
cell's last expression is), waits ``--idle`` seconds (the learner reads the panel before clicking; work the panel
does while displayed happens here), clicks Start and records:

    first_step_s    the click -> the first "step" event of any run (the trainer was built and trained a step)
    first_point_s   the click -> the first figure flush that holds a training point (race: a loss point;
                    DST: the fan-in histogram it draws at the run's start)
    second_click_s  the same panel, Stop, then Start again: the click -> its first "step" event (the warm case)

Full mode (the learner's) unless ``--fast``. The race is measured with its pacing off (``min_race_s=0``: pacing
spreads the rounds over the race's length on purpose and would hide the set-up cost) unless ``--paced``.

    python benchmarks/first_click.py                        # CPU, race and DST, 3 fresh processes each
    python benchmarks/first_click.py --device cuda --runs 5 # the GPU (the panels' device="auto" picks it too)
    python benchmarks/first_click.py --label before         # a name for the JSON under benchmarks/results/
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

T_START = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
PANELS = ("race", "dst")


def child(args) -> dict:
    import torch  # noqa: F401  (the notebooks' first cell)

    from sparseopt_edu import diagnostics  # noqa: F401
    from sparseopt_edu.widgets import dst, race

    t_import = time.perf_counter() - T_START
    marks: dict[str, float] = {}
    first_step = threading.Event()

    def spy(module):  # every trainer the panel builds reports its first "step" event here
        real = module.make_trainer

        def make(cfg, callbacks, control=None):
            if args.device != "auto":
                cfg = {**cfg, "device": args.device}

            def on_event(ev):
                if ev.kind == "step" and "step" not in marks:
                    marks["step"] = time.perf_counter()
                    first_step.set()

            return real(cfg, [*callbacks, on_event], control)

        module.make_trainer = make

    spy(race)
    spy(dst)
    t0 = time.perf_counter()
    if args.panel == "race":
        state = race.RaceState.default() if args.paced else race.RaceState.default(**_no_pace(race.RaceState))
        panel = race.RacePanel(state, mode="thread")
        traces = lambda: [panel._trace(1, on, 2) for on in race.ARMS]  # noqa: E731  (the loss lines)
    else:
        panel = dst.DSTPanel(mode="thread")
        traces = lambda: list(panel.figure.data)  # noqa: E731
    has_point = lambda: any(t.x is not None and len(t.x) > 0 for t in traces())  # noqa: E731
    real_flush = panel._flush

    def flush():
        real_flush()
        if "point" not in marks and has_point():
            marks["point"] = time.perf_counter()

    panel._flush = flush
    panel._repr_mimebundle_()  # what the notebook does with the cell's last expression: display it
    t_build = time.perf_counter() - t0
    warming = getattr(panel, "_warming", None)  # the warm-up thread, where the panel has one

    def watch_warm_up():
        warming.join()
        marks["warm"] = time.perf_counter()

    if warming is not None:
        threading.Thread(target=watch_warm_up, daemon=True).start()
    time.sleep(args.idle)
    t_click = time.perf_counter()
    panel.buttons["start"].click()
    if not first_step.wait(args.timeout):
        raise SystemExit(f"no step event {args.timeout} s after the click")
    deadline = time.perf_counter() + args.timeout
    while "point" not in marks and time.perf_counter() < deadline:
        time.sleep(0.001)
    warm = marks.get("warm")
    out = {"import_s": t_import, "panel_build_s": t_build, "idle_s": args.idle,
           "warm_up_s": None if warm is None else warm - t0 - t_build,  # display -> the warm-up's end
           "click_waited_for_warm_up": warming is not None and (warm is None or warm > t_click),
           "first_step_s": marks["step"] - t_click, "first_point_s": marks.get("point", float("nan")) - t_click}
    panel.buttons["stop"].click()
    panel.wait(args.timeout)
    marks.pop("step")
    first_step.clear()
    t_click = time.perf_counter()
    panel.buttons["start"].click()
    first_step.wait(args.timeout)
    out["second_click_s"] = marks.get("step", float("nan")) - t_click
    panel.buttons["stop"].click()
    panel.wait(args.timeout)
    out["device"] = _device_of(panel)
    import sparseopt_edu

    out["package"] = os.path.dirname(sparseopt_edu.__file__)
    return out


def _no_pace(state_cls) -> dict:
    """``min_race_s=0`` where the race has pacing (older code has no such field)."""
    import dataclasses

    return {"min_race_s": 0.0} if "min_race_s" in {f.name for f in dataclasses.fields(state_cls)} else {}


def _device_of(panel) -> str:
    cfg = panel.state.configs()[0] if hasattr(panel.state, "configs") else panel.state.config()
    return str(cfg.get("device"))


def _code_version(env) -> dict:
    """Which sparseopt_edu the children import (PYTHONPATH may point at another copy) and this checkout's commit."""
    where = subprocess.run([sys.executable, "-c", "import os, sparseopt_edu; print(os.path.dirname("
                            "sparseopt_edu.__file__))"], env=env, capture_output=True, text=True,
                           cwd=HERE).stdout.strip()  # not the checkout root, which would shadow PYTHONPATH
    git = subprocess.run(["git", "-C", os.path.join(HERE, ".."), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    return {"package": where, "checkout_commit": git, "pythonpath": env.get("PYTHONPATH", "")}


def machine() -> dict:
    info = {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        info["load_avg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    return info


def summarise(rows: list[dict], key: str) -> dict:
    values = [r[key] for r in rows if isinstance(r.get(key), float)]
    if not values:
        return {}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--panel", choices=(*PANELS, "both"), default="both", help="which panel (default: both)")
    p.add_argument("--device", default="auto", help="the trainers' device: auto (the panels' own choice), cpu, "
                                                    "cuda (default auto)")
    p.add_argument("--runs", type=int, default=3, help="fresh processes per panel (default 3)")
    p.add_argument("--idle", type=float, default=3.0, help="seconds between displaying the panel and the click "
                                                           "(default 3: a learner reads it first)")
    p.add_argument("--fast", action="store_true", help="SPARSEOPT_EDU_FAST=1 (the test-sized panels)")
    p.add_argument("--paced", action="store_true", help="keep the race's pacing (min_race_s)")
    p.add_argument("--label", default="", help="a word for the JSON's name (before, after, ...)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per process before it is stopped")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        with open(args.json, "w") as fh:
            json.dump(child(args), fh, indent=1)
        return 0
    env = dict(os.environ)
    if args.fast:
        env["SPARSEOPT_EDU_FAST"] = "1"
    else:
        env.pop("SPARSEOPT_EDU_FAST", None)
    panels = PANELS if args.panel == "both" else (args.panel,)
    result = {"machine": machine(), "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
              "code": _code_version(env),
              "mode": "fast" if args.fast else "full", "device": args.device, "idle_s": args.idle,
              "race_paced": args.paced, "panels": {}}
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="first-click-")  # the children's own files; the summary goes to --out
    for name in panels:
        rows = []
        for i in range(args.runs):
            out = os.path.join(work, f"{name}{i + 1}.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--json", out, "--panel", name,
                   "--device", args.device, "--idle", str(args.idle), "--timeout", str(args.timeout)]
            if args.paced:
                cmd.append("--paced")
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout + 60)
            row = {"run": i + 1, "rc": proc.returncode, "wall_s": time.perf_counter() - t0}
            if proc.returncode == 0:
                with open(out) as fh:
                    row.update(json.load(fh))
            else:
                row["stderr_tail"] = proc.stderr[-2000:]
            rows.append(row)
            print(f"{name} run {i + 1}: rc {row['rc']}, first step {row.get('first_step_s', float('nan')):.2f} s, "
                  f"first point {row.get('first_point_s', float('nan')):.2f} s, second click "
                  f"{row.get('second_click_s', float('nan')):.2f} s (import {row.get('import_s', float('nan')):.1f} s,"
                  f" panel {row.get('panel_build_s', float('nan')):.2f} s, warm-up {row.get('warm_up_s')} s, "
                  f"device {row.get('device')})", flush=True)
        result["panels"][name] = {"runs": rows, **{k: summarise(rows, k) for k in (
            "first_step_s", "first_point_s", "second_click_s", "import_s", "panel_build_s")}}
    where = result["machine"].get("gpu") if args.device != "cpu" and "gpu" in result["machine"] else "cpu"
    tag = "-".join(x for x in ("first_click", where.replace(" ", "_"), result["mode"], args.label,
                               time.strftime("%Y%m%d-%H%M%S")) if x)
    path = os.path.join(args.out, f"{tag}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    for name, res in result["panels"].items():
        print(f"{name}: first point median {res['first_point_s'].get('median', float('nan')):.2f} s "
              f"(first step {res['first_step_s'].get('median', float('nan')):.2f} s, second click "
              f"{res['second_click_s'].get('median', float('nan')):.2f} s)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
