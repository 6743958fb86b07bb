#!/usr/bin/env python3
"""Import the official SRCNN and FSRCNN weights as Caffe deploy nets.

For each model, fetches the authors' released ``.mat`` file from its public
repository at the pinned commit (or copies it from a local folder with
``--from``), checks its sha256, converts it exactly (see ``ddsr.model.official``) and
writes into ``--out``:

    <name>_deploy.prototxt    the net (NetSpec)
    <name>.caffemodel         the converted weights
    <name>_deploy.eval.json   evaluation settings tools/eval.py reads
                              ({"input": "bicubic"|"lr", "pad_input": 8, ...})

Models: srcnn_x2 srcnn_x3 srcnn_x4 fsrcnn_x2 fsrcnn_x3 fsrcnn_x4 (default: all).

Examples:
    tools/import_official.py --from /path/to/local/copy --out models/
    tools/eval.py --model models/srcnn_x3_deploy.prototxt --weights models/srcnn_x3.caffemodel \\
        --scale 3 --sets Set5
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr.model import official, official_weights
from ddsr.data.registry import DatasetError, RAW_BASE

PROG = "import_official.py"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="models to import (default: all six): " + ", ".join(official_weights.MODEL_NAMES))
    parser.add_argument("--out", default="models", type=Path,
                        help="output folder (default: models/, git-ignored)")
    parser.add_argument("--from", dest="source_dir", type=Path, default=None,
                        help="offline: a local copy laid out as <DIR>/<folder>/x<s>.mat "
                             "(e.g. /path/to/local/copy); nothing is downloaded")
    parser.add_argument("--cache", type=Path, default=None,
                        help="download folder for the .mat files (default: <out>/official)")
    parser.add_argument("--raw-base", default=RAW_BASE,
                        help=f"base of the raw-file URLs (default: {RAW_BASE})")
    parser.add_argument("--x3-window", choices=("demo", "matlab"), default="demo",
                        help="FSRCNN x3 output placement: 'demo' (default) = the official demo's "
                             "shave_x3 comparison, Deconvolution pad 3; 'matlab' = deconv.m's "
                             "window, pad 4 (one HR pixel off the ground truth)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in official_weights.MODEL_NAMES]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(official_weights.MODEL_NAMES)}")
    if args.source_dir is not None and not args.source_dir.is_dir():
        parser.error(f"--from {args.source_dir}: not a folder")
    return args


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm

    names = args.models or list(official_weights.MODEL_NAMES)
    written = []
    try:
        for name in tqdm(names, desc="import", unit="model", disable=len(names) < 2):
            paths = official.import_model(name, args.out, source_dir=args.source_dir,
                                          cache_dir=args.cache, x3_window=args.x3_window,
                                          raw_base=args.raw_base)
            written.append((name, paths))
    except (ValueError, DatasetError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"{PROG}: error: pycaffe is needed to write .caffemodel files ({exc})", file=sys.stderr)
        return 1
    for name, paths in written:
        print(f"{name}: {paths['deploy']} {paths['weights']} {paths['sidecar']} (from {paths['mat']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
