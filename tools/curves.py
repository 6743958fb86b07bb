#!/usr/bin/env python3
"""Training curves of one or more runs: loss and learning rate from the Caffe log, and the
PSNR/SSIM of every snapshot on a test set (the paper's Fig. 5 and Fig. 6).

    tools/curves.py ddsr_x3 ddsr_x3_sgd ddsr_x3_nores ddsr_x3_sgd_nores --out reports/fig5

A run NAME is solvers/NAME.prototxt (its snapshot_prefix), prototxt/NAME_deploy.prototxt
and runs/NAME/train.log (written by tools/train.py). Writes into --out: loss.csv and
loss.png (every run's training/test loss and learning rate), quality.csv and psnr.png
(each snapshot's mean PSNR and SSIM on --set, with the bicubic baseline). The logic is in
ddsr.training.curves.
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr.training import curves  # noqa: E402
from ddsr.cli import exit_status  # noqa: E402

PROG = "curves"
REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].strip().replace("\n", " "))
    parser.add_argument("runs", nargs="+", metavar="NAME", help="experiment names")
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                        help="legend labels, one per run (default: the names)")
    parser.add_argument("--set", default="Set5", help="test set evaluated for each snapshot (default: %(default)s)")
    parser.add_argument("--scale", type=int, default=None,
                        help="upscaling factor (default: from the run's deploy net / experiment)")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "data",
                        help="folder holding the set folders (default: data/)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="working directory of the runs (holds solvers/, prototxt/, snapshots/, runs/; "
                             "default: the repository root)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "curves",
                        help="output folder (default: reports/curves/)")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="evaluate every N-th snapshot (the newest always; default: %(default)s)")
    parser.add_argument("--tile", type=int, default=None, metavar="SIZE",
                        help="run the nets on SIZE x SIZE LR tiles (same result, less memory)")
    parser.add_argument("--no-eval", action="store_true",
                        help="only the log curves (loss, learning rate); no snapshot evaluation")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    labels = args.labels or args.runs
    if len(labels) != len(args.runs):
        raise ValueError(f"{len(args.runs)} runs but {len(labels)} labels")
    written, lines = curves.write_run_curves(
        dict(zip(args.runs, labels)), args.out, data_root=args.data_root, set_name=args.set, scale=args.scale,
        root=args.root, every=args.every, tile=args.tile, evaluate=not args.no_eval, progress=not args.quiet,
        warn=lambda message: print(f"{PROG}: warning: {message}", file=sys.stderr))
    for line in lines:
        print(f"{PROG}: {line}")
    for path in written:
        print(f"{PROG}: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(PROG, main))
