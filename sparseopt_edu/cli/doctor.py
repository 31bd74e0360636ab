"""``sparseopt-edu doctor``: is this environment ready for the notebooks (versions, widgets, the kernel)?"""
from __future__ import annotations

import argparse
import json

from ..doctor import environment_report, format_report
from . import command


def _doctor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")


@command("doctor", configure=_doctor_args)
def doctor(args: argparse.Namespace) -> int:
    """Check versions, FigureWidget support, the JupyterLab override and the kernel's environment."""
    report = environment_report()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    return 0  # a diagnostic, not a gate: problems are reported with their fix, the exit status stays 0
