#!/usr/bin/env python3
"""`make demo`: train a small DDSR on the CPU and report how it beats bicubic.

No download, no GPU: the default data are photographs bundled with scikit-image
(written as PNG set folders under data/demo/); --data DIR uses real sets instead
(train T91, test Set5). The steps, each printed as the command a user could type and run
in this process (Caffe's training as its own process, the paper's command):

  1. data       the demo sets under data/demo/ (or DIR)
  2. database   tools/make_h5.py --experiment demo_x3  -> data/demo/h5
  3. train      caffe train -solver solvers/demo_x3.prototxt  (tools/train.py demo_x3)
  4. evaluate   tools/eval.py --model prototxt/demo_x3_deploy.prototxt --weights ... vs bicubic
  5. curves     every snapshot's PSNR on the test images, and the loss from the log
  6. compare    crops of bicubic / demo net / ground truth

and a report folder (default reports/demo/): README.md (the result, times, figures),
table3.md (tools/eval.py's Table 3 layout), comparison.png, curves.png, CSVs and demo.json.
An interrupted demo resumes its training from the newest snapshot when run again.
The logic is in ddsr.workflows.demo.
"""

import argparse
import sys
import time
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr.paths import REPO_ROOT, relative_path  # noqa: E402
from ddsr.workflows import demo  # noqa: E402
from ddsr.cli import exit_status  # noqa: E402

PROG = "demo"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].strip(),
        epilog=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="folder holding T91, Set5 and BSD200-train or General-100 (e.g. "
                             "/path/to/local/copy); default: the images bundled with scikit-image")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "demo",
                        help="report folder (default: reports/demo)")
    parser.add_argument("--gpu", type=int, default=None, metavar="N",
                        help="train and evaluate on GPU N (a CUDA build); default: the CPU")
    parser.add_argument("--restart", action="store_true",
                        help="train from iteration 0 (delete the demo's snapshots) instead of resuming")
    parser.add_argument("--min-gain", type=float, default=0.5, metavar="DB",
                        help="exit with status 1 unless the net beats bicubic by this many dB "
                             "(default: 0.5)")
    parser.add_argument("--nice", type=int, default=0, metavar="N", help="nice increment for Caffe")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    begun = time.time()
    summary = demo.run_demo(args.out, data=args.data, gpu=args.gpu, restart=args.restart, min_gain=args.min_gain,
                            niceness=args.nice, progress=not args.quiet, prog=PROG)
    gain = summary["gain_db"]
    print(f"{PROG}: done in {(time.time() - begun) / 60:.1f} min: {summary['test_set']} x{summary['scale']} PSNR "
          f"{summary['psnr']:.2f} dB vs bicubic {summary['bicubic_psnr']:.2f} dB ({gain:+.2f} dB)", file=sys.stderr)
    print(f"report: {relative_path(args.out.resolve() / 'README.md', REPO_ROOT)}")
    if gain < args.min_gain:
        print(f"{PROG}: error: the demo net beats bicubic by {gain:+.2f} dB, less than the {args.min_gain} dB it "
              f"should", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(PROG, main))
