#!/usr/bin/env python3
"""The visual comparison of the paper's Fig. 7: crops of bicubic, model(s) and ground truth.

    tools/compare.py --experiment ddsr_x3 --out reports/fig7.png

One row per image (default: the paper's bird, monarch, comic and BSD200 12003 at x3): the
ground truth with the crop marked, then the crop of bicubic, of each model and of the
ground truth, titled with the image's PSNR (Y, border shaved, as tools/eval.py). Colour
outputs are the model's Y with bicubic Cb, Cr. Writes the PNG and a CSV beside it
(same name, .csv) with the PSNR and crop of every panel. The logic is in ddsr.evaluation.compare.
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr.evaluation import compare  # noqa: E402
from ddsr.model import experiments  # noqa: E402
from ddsr.paths import REPO_ROOT  # noqa: E402
from ddsr.training import curves, snapshots  # noqa: E402
from ddsr.cli import exit_status  # noqa: E402

PROG = "compare"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].strip().replace("\n", " "),
        epilog=("Models: --experiment NAME uses prototxt/NAME_deploy.prototxt and the newest "
                "snapshots/NAME_iter_N.caffemodel; --model DEPLOY --weights W [--label L] gives one "
                "explicitly. Both can be repeated and mixed; the first model chooses the automatic "
                "crop (where it gains most over bicubic)."))
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME",
                        help="a trained experiment (repeatable)")
    parser.add_argument("--model", action="append", default=[], type=Path, metavar="DEPLOY",
                        help="a deploy prototxt (repeatable; each needs a --weights)")
    parser.add_argument("--weights", action="append", default=[], type=Path, metavar="CAFFEMODEL",
                        help="weights of the --model at the same position")
    parser.add_argument("--label", action="append", default=[], metavar="LABEL",
                        help="label of the --model at the same position (default: DDSR)")
    parser.add_argument("--scale", type=int, default=None,
                        help="upscaling factor (default: the first model's deconvolution stride)")
    parser.add_argument("--images", nargs="+", default=list(compare.PAPER_IMAGES), metavar="SET/NAME",
                        help=f"images under --data-root (default: the paper's Fig. 7 images, {' '.join(compare.PAPER_IMAGES)})")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "data",
                        help="folder holding the set folders (default: data/)")
    parser.add_argument("--crop-size", type=int, default=96, help="side of the automatic crop in HR pixels (default: %(default)s)")
    parser.add_argument("--crop", action="append", default=[], metavar="NAME=TOP,LEFT,SIZE",
                        help="a fixed crop for one image (repeatable)")
    parser.add_argument("--tile", type=int, default=None, metavar="SIZE",
                        help="run the nets on SIZE x SIZE LR tiles (same result, less memory)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "compare.png", help="PNG to write (default: reports/compare.png)")
    return parser.parse_args(argv)


def model_list(args):
    """(label, deploy, weights) of every model asked for."""
    models = []
    known = experiments.load_experiments(experiments.EXPERIMENTS_PATH) if args.experiment else {}
    for name in args.experiment:
        if name not in known:
            raise ValueError(f"unknown experiment {name!r} (known: {', '.join(known)})")
        deploy = REPO_ROOT / known[name].deploy_net_path
        snap = snapshots.newest_snapshot(known[name].snapshot_prefix, REPO_ROOT, resumable=False)
        if snap is None:
            raise ValueError(f"experiment {name!r} has no {known[name].snapshot_prefix}_iter_*.caffemodel "
                             f"(train it first)")
        models.append((f"{name} ({snap.iteration // 1000}k it)" if snap.iteration >= 1000
                       else f"{name} ({snap.iteration} it)", deploy, snap.caffemodel))
    if len(args.weights) != len(args.model):
        raise ValueError(f"{len(args.model)} --model but {len(args.weights)} --weights")
    if len(args.label) > len(args.model):
        raise ValueError("more --label than --model")
    for i, (deploy, weights) in enumerate(zip(args.model, args.weights)):
        models.append((args.label[i] if i < len(args.label) else "DDSR", deploy, weights))
    if not models:
        raise ValueError("no model: give --experiment NAME or --model DEPLOY --weights CAFFEMODEL")
    return models


def parse_crops(specs):
    crops = {}
    for spec in specs:
        try:
            name, numbers = spec.split("=", 1)
            top, left, size = (int(v) for v in numbers.split(","))
        except ValueError:
            raise ValueError(f"--crop {spec!r}: expected NAME=TOP,LEFT,SIZE") from None
        crops[name] = (top, left, size)
    return crops


def main(argv=None):
    args = parse_args(argv)
    models = model_list(args)
    crops = parse_crops(args.crop)
    scale = args.scale or curves.deploy_scale(models[0][1])
    if scale is None:
        raise ValueError("cannot tell the scale; give --scale")
    entries, csv_path = compare.write_comparison(models, args.images, args.data_root, scale, args.out,
                                                 crop_size=args.crop_size, crops=crops, title=args.title,
                                                 tile=args.tile)
    for entry in entries:
        print(f"{PROG}: {entry['name']} x{scale}: "
              + ", ".join(f"{label} {value:.2f} dB" for label, _, _, value in entry["outputs"]))
    print(f"{PROG}: wrote {args.out} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(PROG, main))
