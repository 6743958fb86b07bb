#!/usr/bin/env python3
"""`make reproduce` / `make reproduce-ablations`: the paper's protocol, end to end.

  1. datasets   tools/fetch_datasets.py (or --data DIR holding the set folders)
  2. database   tools/make_h5.py --experiment NAME  -> data/h5/xS/ (kept if it fits the experiment)
  3. train      caffe train -solver solvers/NAME.prototxt -gpu 0  (resumes from the newest snapshot)
  4. evaluate   tools/eval.py on Set5, Set14 and BSD200 -> OUT/NAME/
  5. tables     OUT/table3.md (Table 3 rows); with --ablations OUT/table1.md, OUT/table2.md
                and OUT/fig5/ (Set5 PSNR against iteration: Adam/SGD, with/without residual)

Training needs a CUDA build of Caffe: each experiment is 100,000 iterations (about 3 hours on
the paper's GTX 1080 Ti). On a CPU-only Caffe the tool refuses with the expected run time
unless --force. Interrupted training resumes from its newest snapshot when run again.
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr.model import experiments  # noqa: E402
from ddsr.paths import DEFAULT_DATA_ROOT, REPO_ROOT, relative_path  # noqa: E402
from ddsr.training import runner  # noqa: E402
from ddsr.workflows import reproduce  # noqa: E402
from ddsr.cli import exit_status  # noqa: E402

PROG = "reproduce"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].strip(),
        epilog=__doc__.split("\n\n", 1)[1].rstrip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, nargs="+", default=None, metavar="S",
                        help="Table 3 scales to train and evaluate (default: 2 3 4, or none with --ablations)")
    parser.add_argument("--ablations", action="store_true",
                        help="also train and evaluate Table 1, Table 2 and Fig. 5 (all x3)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="folder holding the set folders (no download); default: fetch into data/")
    parser.add_argument("--gpu", type=int, default=0, metavar="N", help="GPU to train on (default: 0)")
    parser.add_argument("--force", action="store_true",
                        help="train on the CPU when Caffe has no GPU (days per experiment)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "reproduce",
                        help="report folder (default: reports/reproduce)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (experiments, commands, expected time) and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    known = experiments.load_experiments(experiments.EXPERIMENTS_PATH)
    if args.scale is None:
        args.scale = [] if args.ablations else list(experiments.SCALES)
    names = reproduce.experiments_for(args.scale, args.ablations)
    if not names:
        raise ValueError("nothing to do: give --scale S and/or --ablations")
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"experiments.yaml has no {', '.join(missing)}")
    chosen = [known[n] for n in names]
    # Where to train: the GPU if this Caffe can use it, else the CPU only when forced.
    gpu = args.gpu
    if not runner.gpu_available(gpu=gpu):
        estimate, refusal = reproduce.cpu_refusal(chosen, gpu)
        if not (args.force or args.dry_run):
            raise RuntimeError(refusal)
        print(f"{PROG}: no usable GPU {gpu}: training on the CPU, {estimate}", file=sys.stderr)
        gpu = None
    data_root = args.data.resolve() if args.data else DEFAULT_DATA_ROOT
    if args.dry_run:
        print(f"{PROG}: plan: {', '.join(names)} on {'GPU %d' % gpu if gpu is not None else 'the CPU'}; "
              f"data {relative_path(data_root, REPO_ROOT)}", file=sys.stderr)
        for experiment in chosen:
            print(f"{PROG}:   " + " ".join(runner.train_command(experiment.solver_path, gpu=gpu)), file=sys.stderr)
        return 0
    written = reproduce.reproduce(chosen, ablations=args.ablations, gpu=gpu, data_root=data_root,
                                  fetch=args.data is None, out=args.out.resolve(), prog=PROG,
                                  progress=not args.quiet)
    for path in written:
        print(f"{PROG}: wrote {relative_path(path, REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(PROG, main))
