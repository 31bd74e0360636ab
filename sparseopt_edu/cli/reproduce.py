"""``sparseopt-edu reproduce table2``: the paper's Table 2 (ResNet-20, CIFAR-100, RigL at 90/95/97% sparsity,
with and without SparseOpt) re-run on our recipe, our numbers printed beside the paper's."""
from __future__ import annotations

import argparse
import os

from ..paper import format_table2, table2_config
from . import command
from .args import int_or_none
from .errors import CliError, guarded
from .grid import add_grid_args, check_grid, format_comparison, run_grid, write_compare_report


def _reproduce_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", choices=("table2",), help="which table (table2: ResNet-20 CIFAR-100 RigL)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per run (paper: 100/200/300/500)")
    parser.add_argument("--dataset", choices=("cifar100", "fashion_mnist", "shapes", "digits"), default="cifar100",
                        help="cifar100 (the paper's; needs a download), fashion_mnist (real, offline: "
                             "apt-get install dataset-fashion-mnist), or a procedural stand-in (default cifar100)")
    parser.add_argument("--variants", default="rigl,rigl+sparseopt", metavar="V,V,...",
                        help="arms to run (default rigl,rigl+sparseopt); ablations: rigl+sparseopt:grow_from=corrected "
                             "(RigL grows from the corrected gradient), rigl+sparseopt:scope=update (SparseOpt "
                             "scales the whole update), set, set+sparseopt")
    parser.add_argument("--data-root", default="data", help="where the dataset lives (default data)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile every run (GPU: the first run compiles, the others reuse its code, and "
                             "the runs still interleave on the card; a persistent cache keeps it for later)")
    parser.add_argument("--n-train", type=int_or_none, default=None, help=argparse.SUPPRESS)  # tests, smoke
    parser.add_argument("--n-test", type=int_or_none, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--delta-t", type=int, default=100, help=argparse.SUPPRESS)
    add_grid_args(parser, sparsities="0.9,0.95,0.97", seeds=3)


@command("reproduce", configure=_reproduce_args)
@guarded
def reproduce_cmd(args: argparse.Namespace) -> int:
    """Re-run a table of the paper (table2: ResNet-20 on CIFAR-100, RigL at 90, 95, 97 percent sparsity, with and without SparseOpt)."""
    check_grid(args)
    if args.epochs < 1:
        raise CliError(f"--epochs must be >= 1, got {args.epochs}")
    from ..train import grid

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        for v in variants:
            grid.parse_variant_options(v)
    except ValueError as e:
        raise CliError(f"--variants: {e}") from None
    if not variants:
        raise CliError("--variants must name at least one arm, e.g. rigl,rigl+sparseopt")
    if args.dataset == "cifar100":
        from ..data import load_dataset

        try:
            load_dataset("cifar100", root=args.data_root)
        except FileNotFoundError:
            raise CliError(
                f"CIFAR-100 not found under {os.path.abspath(args.data_root)}. Download it once with:\n"
                f"    sparseopt-edu train --dataset cifar100 --download --data-root {args.data_root} --epochs 1 "
                "--n-train 128 --batch-size 128\n"
                "or in Python: sparseopt_edu.data.load_dataset('cifar100', root="
                f"{args.data_root!r}, download=True). Offline, run the same harness on real data with "
                "--dataset fashion_mnist (apt-get install dataset-fashion-mnist)."
            ) from None
    elif args.dataset == "fashion_mnist":
        from ..data import load_dataset

        try:
            load_dataset("fashion_mnist", root=args.data_root)
        except FileNotFoundError as e:
            raise CliError(str(e)) from None
    base = table2_config(args)
    out = args.out or os.path.join("runs", f"table2-{args.dataset}-{args.epochs}ep")
    rows, paths = run_grid(base, variants, args, out, "Table 2 reproduction", epochs_echo=True)
    table = format_table2(rows, args.epochs)
    note = {"cifar100": "",
            "fashion_mnist": "\nNote: real Fashion-MNIST (1 x 28 x 28, 10 classes), not the paper's CIFAR-100; "
                             "compare the differences between arms, not the accuracies.\n"}.get(
        args.dataset, f"\nNote: {args.dataset} is an offline stand-in; the paper's numbers are for CIFAR-100.\n")
    comparisons = "\n".join(format_comparison(c) for c in grid.paired_comparisons(rows))
    print()
    print(table + note)
    print("Paired by seed (treatment - baseline, 95% t interval):\n" + comparisons)
    from .. import report

    with open(paths["md"], "a") as fh:
        fh.write("\n## Beside the paper (docs/method.md section 3)\n\n" + table + note)
        fh.write("\n## Paired by seed\n\n```\n" + comparisons + "\n```\n")
    html = write_compare_report(rows, out, f"Table 2 reproduction ({args.dataset}, {args.epochs} epochs)",
                                 [report.markdown_to_html_table(table), f"<pre>{comparisons}</pre>"])
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['json']}, {html}")
    return 0

