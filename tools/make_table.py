#!/usr/bin/env python3
"""Combine tools/eval.py output folders into one Table 3, with the published values beside.

Each RUN is an eval output folder (its summary.json, run.json and bicubic/ baseline), or
LABEL=FOLDER to set the row's label. Rows with the same label are merged (e.g. one DDSR run
per scale, or the bicubic baseline every model run carries); cells they share must agree.
Rows are ordered as in the paper (Bicubic, A+, SRF, SRCNN, FSRCNN, DDSR, then others); A+ and
SRF, which this project does not compute, are shown with their published values.

Example:
  tools/make_table.py runs/eval/bicubic runs/eval/srcnn runs/eval/fsrcnn runs/eval/ddsr \\
      --out docs/table3.md
"""

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT / "python"))

from ddsr.evaluation import published, report
from ddsr.atomic import write_text_atomic  # noqa: E402

PROG = "make_table.py"


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="eval output folder, or LABEL=FOLDER")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write the Markdown here (atomically); default: print it")
    p.add_argument("--precision", choices=sorted(report.PRECISION), default="paper",
                   help="decimals (paper: PSNR .2f SSIM .4f IFC .2f; full: .4f .5f .3f)")
    p.add_argument("--no-published", action="store_true",
                   help="computed rows only: no paper/Δ rows, no published-only rows")
    p.add_argument("--published-only", nargs="*", default=["A+", "SRF"], metavar="METHOD",
                   help="published rows shown without a computed row (default: A+ SRF; none: give the "
                        "flag without names)")
    p.add_argument("--no-baselines", action="store_true",
                   help="leave out the bicubic baselines stored inside model runs")
    p.add_argument("--title", default="## Table 3: mean PSNR (dB) / SSIM / IFC",
                   help="heading line above the table ('' for none)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        rows = []
        for run in args.runs:
            label, sep, folder = run.partition("=")
            if not sep:
                label, folder = None, run
            found = report.load_run(folder, label=label)
            if args.no_baselines:
                found = found[:1]
            rows += found
        rows = report.combine_rows(rows)
        for name in args.published_only:
            published.published_row(name)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    table = report.table3_markdown(rows, precision=args.precision, published=not args.no_published,
                                   published_only=() if args.no_published else args.published_only,
                                   title=args.title or None)
    if args.out is None:
        sys.stdout.write(table)
    else:
        write_text_atomic(args.out, table)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
