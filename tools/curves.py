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

from ddsr.training import curves, snapshots

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


def run_files(root, name):
    """Solver info, deploy prototxt and log of a run; errors name what is missing."""
    solver = root / "solvers" / f"{name}.prototxt"
    if not solver.is_file():
        raise ValueError(f"unknown run {name!r}: no {solver}")
    info = snapshots.read_solver(solver)
    return info, root / "prototxt" / f"{name}_deploy.prototxt", root / "runs" / name / "train.log"


def run_scale(deploy, given):
    """The scale of a run: --scale, else the stride of its deploy net's deconvolution."""
    if given is not None:
        return given
    scale = curves.deploy_scale(deploy)
    if scale is None:
        raise ValueError(f"cannot tell the scale of {deploy} (no Deconvolution layer); give --scale")
    return scale


def main(argv=None):
    args = parse_args(argv)
    labels = args.labels or args.runs
    if len(labels) != len(args.runs):
        raise ValueError(f"{len(args.runs)} runs but {len(labels)} labels")
    loss_runs, quality_runs, loss_rows, quality_rows = {}, {}, [], []
    baseline = None
    scales = set()
    for name, label in zip(args.runs, labels):
        info, deploy, log_path = run_files(args.root, name)
        if log_path.is_file():
            rows = curves.log_rows(log_path)
            loss_runs[label] = rows
            loss_rows += [{"run": name, **r} for r in rows]
        else:
            print(f"{PROG}: warning: no log {log_path}; no loss curve for {name}", file=sys.stderr)
        if args.no_eval:
            continue
        scale = run_scale(deploy, args.scale)
        scales.add(scale)
        rows = curves.evaluate_snapshots(deploy, info.snapshot_prefix, args.data_root, args.set, scale,
                                         workdir=args.root, every=args.every, progress=not args.quiet,
                                         tile=args.tile)
        quality_runs[label] = rows
        quality_rows += [{"run": name, **r} for r in rows]
    if not loss_runs and not quality_runs:
        raise ValueError("nothing to plot: no logs" + ("" if args.no_eval else " and no snapshots"))
    written = []
    if loss_runs:
        written.append(curves.write_csv(args.out / "loss.csv", loss_rows, ("run",) + curves.LOSS_COLUMNS))
        written.append(curves.plot_loss(loss_runs, args.out / "loss.png"))
    if quality_runs:
        if len(scales) == 1:
            (scale,) = scales
            images = curves.load_test_images(args.data_root, args.set, scale)
            baseline = curves.bicubic_quality(images, scale)
            quality_rows.append({"run": "bicubic", "iteration": None, **baseline})
        else:
            scale = "/".join(map(str, sorted(scales)))
        written.append(curves.write_csv(args.out / "quality.csv", quality_rows,
                                        ("run",) + curves.QUALITY_COLUMNS))
        written.append(curves.plot_quality(quality_runs, args.out / "psnr.png", set_name=args.set,
                                           scale=scale, baseline=baseline))
        for label, rows in quality_runs.items():
            best = max(rows, key=lambda r: r["psnr"])
            last = rows[-1]
            print(f"{PROG}: {label}: {args.set} x{scale} PSNR {last['psnr']:.2f} dB at iteration "
                  f"{last['iteration']} (best {best['psnr']:.2f} at {best['iteration']})"
                  + (f"; bicubic {baseline['psnr']:.2f}" if baseline else ""))
    for path in written:
        print(f"{PROG}: wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(1)
