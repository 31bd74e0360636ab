"""Install the project's JupyterLab settings override into an environment.

Why: the Stop button of a live training panel only works while a cell is running if widget messages
reach the kernel on a subshell (JupyterLab >= 4.4 with ipykernel >= 7, setting ``commsOverSubshells``).
We pin that setting to ``perCommTarget`` instead of relying on the default, and silence the news toast. (The
kernel side needs one more step, which the panels take for their own controls: ipykernel 7.4 sends a comm's
messages back to the main shell; see ``widgets.base.route_to_frontend_subshell``.)
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path


def overrides() -> dict:
    return json.loads(resources.files("sparseopt_edu.resources").joinpath("lab_overrides.json").read_text())


def install(prefix: str | Path) -> Path:
    """Merge our overrides into ``<prefix>/share/jupyter/lab/settings/overrides.json`` (keeps others)."""
    target = Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(target.read_text()) if target.exists() else {}
    for plugin, values in overrides().items():
        current.setdefault(plugin, {}).update(values)
    target.write_text(json.dumps(current, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default=sys.prefix, help="environment prefix (default: this Python's)")
    args = parser.parse_args(argv)
    print(f"JupyterLab settings override written to {install(args.prefix)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
