#!/usr/bin/env python3
"""Super-resolve your own images with a trained model (DDSR, the demo's, or the official SRCNN/FSRCNN).

Each input (files, or folders of images) is the LR image; the output is OUT/<name>.png, the
colour SR image exactly as tools/eval.py writes its images: the net's Y with Cb and Cr upscaled
by MATLAB bicubic, then ycbcr2rgb. Greyscale stays greyscale; an alpha channel is upscaled
(bicubic) and kept; 16-bit and palette images are converted as MATLAB's imread does; the EXIF
orientation is applied. Large images are tiled to stay under --max-memory (exact tiles: the
result equals an untiled run). The net options mean what they mean for tools/eval.py, with
the deploy net's sidecar <deploy>.eval.json as the defaults.

An unreadable input is reported in one line and the others go on (exit status 1 at the end);
an existing output is kept unless --overwrite; every file is written atomically.

Examples:
  tools/upscale.py --model models/fsrcnn_x3_deploy.prototxt --weights models/fsrcnn_x3.caffemodel \\
      photo.jpg --out out/
  tools/upscale.py --experiment ddsr_x3 holiday/ --out holiday_x3/ --compare   # newest snapshot
  tools/upscale.py --model models/srcnn_x2_deploy.prototxt --weights models/srcnn_x2.caffemodel \\
      --self-ensemble scan.png --out out/
"""

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT / "python"))

from ddsr.cli import warnings_as_lines  # noqa: E402
from ddsr.evaluation import deploy_net  # noqa: E402
from ddsr.inference import caffe_model, upscale  # noqa: E402

PROG = "upscale.py"


class CliError(Exception):
    """A bad command line: one line, exit status 2."""


def _size(text):
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().rstrip("b")
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2G, 512M, 3000000000)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return int(value)


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER", help="images, or folders of images")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    what = p.add_argument_group("the model: --experiment NAME [--weights W], or --model DEPLOY --weights W")
    what.add_argument("--experiment", metavar="NAME",
                      help="an experiment of experiments.yaml (its deploy net; weights: its newest snapshot)")
    what.add_argument("--model", type=Path, metavar="DEPLOY", help="any deploy prototxt")
    what.add_argument("--weights", type=Path, metavar="CAFFEMODEL", help="trained weights")
    what.add_argument("--scale", type=int, metavar="S",
                      help="default: the experiment's, the sidecar's, or the x<S> in the deploy file's name")
    net = deploy_net.add_settings_arguments(
        p, tile_help="run the net on SIZE x SIZE input tiles (default: chosen per image for --max-memory)")
    net.add_argument("--max-memory", type=_size, default=upscale.DEFAULT_MAX_MEMORY, metavar="BYTES",
                     help="tile images so that the process stays under this much memory (default 2G)")
    out = p.add_argument_group("output")
    out.add_argument("--self-ensemble", action="store_true",
                     help="the mean over the 8 flips and rotations (x8: 8 times the time, slightly better)")
    out.add_argument("--compare", action="store_true", help="also write <name>_compare.png: bicubic | SR")
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: keep them)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def plan(args):
    if (args.model is None) == (args.experiment is None):
        raise CliError("give either --experiment NAME or --model DEPLOY --weights CAFFEMODEL")
    for name in ("pad_input", "tile_overlap"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise CliError(f"--{name.replace('_', '-')} must be >= 0")
    if args.tile is not None and args.tile < 1:
        raise CliError(f"--tile must be positive, got {args.tile}")
    if args.experiment is not None:
        deploy, weights, scale = caffe_model.experiment_model(args.experiment, REPO_ROOT, args.weights)
        if args.scale is not None and args.scale != scale:
            raise CliError(f"--scale {args.scale}: experiment {args.experiment} is x{scale}")
        newest = args.weights is None
    else:
        if args.weights is None:
            raise CliError("--model needs --weights")
        deploy, weights, newest = args.model, args.weights, False
        scale = args.scale or deploy_net.infer_scale(deploy)
        if scale is None:
            raise CliError(f"cannot tell the scale of {deploy}: give --scale")
    if scale < 1:
        raise CliError(f"--scale must be positive, got {scale}")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out}: not a folder")
    return deploy, weights, scale, newest


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with warnings_as_lines(PROG):
            return run(args)
    except (CliError, deploy_net.ModelError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def run(args):
    from tqdm import tqdm

    from ddsr.evaluation.upscaler import load_upscaler

    deploy, weights, scale, newest = plan(args)
    files, errors = upscale.collect_inputs(args.inputs)
    upscaler = load_upscaler(deploy, weights, scale, label=deploy.stem, gpu=args.gpu,
                             **deploy_net.settings_overrides(args))
    s = upscaler.settings
    print(f"model: {deploy} + {weights}{' (the newest snapshot)' if newest else ''}: x{scale}, input {s.input}, "
          f"pad {s.pad_input}{', offset ' + str(tuple(s.output_offset)) if any(s.output_offset) else ''}"
          f"{', self-ensemble x8' if args.self_ensemble else ''}", file=sys.stderr)
    for e in errors:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    per_pixel = upscale.net_bytes_per_pixel(upscaler.net) if args.tile is None else None
    resident = upscale.resident_bytes()  # before any forward: the net's blobs are reused from file to file
    taken = {}
    written = kept = 0
    with tqdm(files, unit="img", disable=args.quiet or not files, file=sys.stderr) as bar:
        for path in bar:
            bar.set_postfix_str(path.name)
            out = upscale.output_paths(path, args.out)[0]
            if out in taken:
                errors.append(f"{path}: its output {out} is already written from {taken[out]} (same name)")
                bar.write(f"{PROG}: error: {errors[-1]}", file=sys.stderr)
                continue
            taken[out] = path
            try:
                done = upscale.upscale_file(path, upscaler, args.out, max_memory=args.max_memory,
                                            self_ensemble_x8=args.self_ensemble, compare=args.compare,
                                            overwrite=args.overwrite, per_pixel=per_pixel, resident=resident)
            except (upscale.InputError, deploy_net.ModelError, ValueError) as exc:
                errors.append(str(exc))
                bar.write(f"{PROG}: error: {exc}", file=sys.stderr)
                continue
            if done["status"] == "kept":
                kept += 1
                bar.write(f"{PROG}: kept {out} (exists; --overwrite replaces it)", file=sys.stderr)
            else:
                written += 1
                tiled = f", tiles of {done['tile']} px" if done["tile"] else ""
                bar.write(f"{path} ({done['size'][1]}x{done['size'][0]}) -> {out}{tiled}", file=sys.stderr)
    print(f"{written} written, {kept} kept, {len(errors)} failed, in {args.out}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
