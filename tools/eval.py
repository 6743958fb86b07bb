#!/usr/bin/env python3
"""Evaluate bicubic or a Caffe deploy net on the SR test sets with the paper's protocol.

Writes into --out: per_image.csv, summary.json ({"Set5": {"x3": {"psnr", "ssim", "ifc"}}}),
run.json (settings, models, timings, errors), table3.md (the paper's Table 3 layout with the
published values and differences), bicubic/ (the bicubic baseline beside a model row) and
images/<Set>/x<s>/<image>.png (colour SR images). --self-ensemble adds x8/ (the same files for
the mean over the 8 flips and rotations), a row "<name> (x8)" of its own beside the single-pass
row; the published values are single-pass. The logic is in ddsr.evaluation.
The report is written beside --out and replaces it only when complete: an error, Ctrl-C
(exit 130) or SIGTERM (143) leaves the previous one whole.

Test sets of the registry (Set5, Set14, BSD200, ...) must hold exactly the registry's files
(names and sha256) before anything runs; --allow-modified-sets evaluates a set that differs
and marks it as modified (†) everywhere, without a difference to the paper. A mean over fewer
images than the set holds (some failed) is shown as "30.85 (4 of 5)", also without one.

Examples:
  tools/eval.py --method bicubic --scale 2 3 4 --sets Set5 Set14 BSD200 --out runs/eval/bicubic
  tools/eval.py --model prototxt/ddsr_x{scale}_deploy.prototxt \\
      --weights snapshots/ddsr_x{scale}_iter_100000.caffemodel --scale 2 3 4 --out runs/eval/ddsr
"""

import argparse
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT / "python"))

from ddsr import atomic  # noqa: E402
from ddsr.cli import warnings_as_lines  # noqa: E402
from ddsr.data import registry as datasets  # noqa: E402
from ddsr.evaluation import deploy_net, published, report  # noqa: E402
from ddsr.evaluation import metrics as quality_metrics  # noqa: E402
from ddsr.evaluation import run as eval_run  # noqa: E402

PROG = "eval.py"


class CliError(Exception):
    """A bad input: reported as one line, exit status 2."""


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to evaluate")
    what.add_argument("--method", choices=["bicubic"], help="evaluate MATLAB bicubic upscaling")
    what.add_argument("--model", nargs="+", metavar="DEPLOY",
                      help="deploy prototxt: one per --scale, or one path with a {scale} placeholder "
                           "(e.g. prototxt/ddsr_x{scale}_deploy.prototxt)")
    what.add_argument("--weights", nargs="+", metavar="CAFFEMODEL",
                      help="trained weights, matched to --model the same way")
    what.add_argument("--scale", nargs="+", type=int, metavar="S",
                      help="scales (default: 2 3 4 for bicubic; for one model, the sidecar's scale or the "
                           "x<S> in its file name)")
    what.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD200"], metavar="SET",
                      help="test sets, folders under --data-root (default: Set5 Set14 BSD200)")
    what.add_argument("--data-root", type=Path, default=REPO_ROOT / "data", metavar="DIR",
                      help="folder holding the set folders (default: data/ in the repository)")
    what.add_argument("--allow-modified-sets", action="store_true",
                      help="evaluate a registry test set whose files differ from datasets/registry.tsv "
                           "(missing, changed or extra images); its means are marked as modified and "
                           "not compared with the paper")
    deploy_net.add_settings_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="output folder (default: runs/eval/<name>)")
    out.add_argument("--name", default=None, help="row label in the tables (default: Bicubic, the sidecar's "
                                                  "name, or the deploy file's name)")
    out.add_argument("--paper-row", default=None, metavar="METHOD",
                     help=f"published Table 3 row to compare with ({', '.join(published.TABLE3_METHODS)} or none; "
                          "default: guessed from the name)")
    out.add_argument("--metrics", nargs="+", choices=quality_metrics.METRIC_NAMES, default=list(quality_metrics.METRIC_NAMES),
                     help="metrics to compute (default: psnr ssim ifc)")
    out.add_argument("--no-baseline", action="store_true",
                     help="do not compute the bicubic row beside a model row")
    out.add_argument("--no-images", action="store_true", help="do not save the colour SR PNGs")
    out.add_argument("--self-ensemble", action="store_true",
                     help="also evaluate the x8 self-ensemble (mean over the 8 flips and rotations, 8 times the "
                          "forwards) into <out>/x8/, its own table row \"<name> (x8)\"")
    out.add_argument("--precision", choices=sorted(report.PRECISION), default="paper",
                     help="decimals in table3.md (paper: PSNR .2f SSIM .4f IFC .2f; full: .4f .5f .3f)")
    out.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="processes computing the metrics (default 1; results do not depend on it)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _expand(paths, scales, what):
    """One path per scale, from a {scale} template or a list in --scale order."""
    if len(paths) == 1 and "{scale}" in paths[0]:
        return {s: Path(paths[0].format(scale=s)) for s in scales}
    if len(paths) == len(scales):
        return {s: Path(p) for s, p in zip(scales, paths)}
    raise CliError(f"{len(paths)} {what} path(s) for {len(scales)} scale(s): give one per --scale, "
                   f"or one path with a {{scale}} placeholder")


def _infer_scale(model):
    """The scale of a single deploy net: its sidecar's, else an x<S> in its file name."""
    scale = deploy_net.infer_scale(model)
    if scale is None:
        raise CliError(f"cannot tell the scale of {model}: give --scale")
    return scale


def _default_label(model_template):
    stem = Path(model_template).stem
    for part in ("_deploy", "-deploy", "_x{scale}", "-x{scale}", "x{scale}"):
        stem = stem.replace(part, "")
    return stem or "model"


def plan(args):
    """Validate the arguments and decide per-scale models and settings (nothing heavy)."""
    if (args.method is None) == (args.model is None):
        raise CliError("give either --method bicubic or --model DEPLOY --weights CAFFEMODEL")
    if args.model is None and any(v is not None for v in (args.weights, args.input, args.pad_input,
                                                          args.output_offset, args.tile, args.tile_overlap)):
        raise CliError("--weights, --input, --pad-input, --output-offset and --tile apply to --model only")
    if args.model is not None and args.weights is None:
        raise CliError("--model needs --weights")
    if args.pad_input is not None and args.pad_input < 0:
        raise CliError(f"--pad-input must be >= 0, got {args.pad_input}")
    if args.tile is not None and args.tile < 1:
        raise CliError(f"--tile must be positive, got {args.tile}")
    if args.jobs < 1:
        raise CliError(f"--jobs must be >= 1, got {args.jobs}")
    if args.tile_overlap is not None and args.tile_overlap < 0:
        raise CliError(f"--tile-overlap must be >= 0, got {args.tile_overlap}")
    if args.scale is not None:
        scales = list(dict.fromkeys(args.scale))
        if min(scales) < 1:
            raise CliError(f"scales must be positive, got {args.scale}")
    elif args.method == "bicubic":
        scales = [2, 3, 4]
    elif len(args.model) == 1 and "{scale}" not in args.model[0]:
        scales = [_infer_scale(args.model[0])]
    else:
        raise CliError("give --scale")
    sets = list(dict.fromkeys(args.sets))
    for name in sets:
        try:
            datasets.list_set_images(args.data_root, name)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    if args.gpu is not None and args.model is None:
        raise CliError("--gpu applies to --model only (bicubic runs in numpy)")
    if args.self_ensemble and args.model is None:
        raise CliError("--self-ensemble applies to --model only (bicubic commutes with flips and rotations)")

    models = {}
    if args.model is not None:
        deploys = _expand(args.model, scales, "--model")
        weights = _expand(args.weights, scales, "--weights")
        for s in scales:
            try:
                models[s] = eval_run.DeployModel.from_files(deploys[s], weights[s], s,
                                                            **deploy_net.settings_overrides(args))
            except deploy_net.ModelError as exc:
                raise CliError(str(exc)) from exc
    if args.name:
        label = args.name
    elif args.method == "bicubic":
        label = "Bicubic"
    else:
        named = [m.settings.name for m in models.values() if m.settings.name]
        label = named[0] if named else _default_label(args.model[0])
    if args.paper_row is None:
        paper_row = published.match_method(label)
    elif args.paper_row.lower() == "none":
        paper_row = None
    else:
        paper_row = published.match_method(args.paper_row)
        if paper_row is None or paper_row.lower() != args.paper_row.lower():
            raise CliError(f"--paper-row {args.paper_row!r} is not a Table 3 row "
                           f"({', '.join(published.TABLE3_METHODS)} or none)")
    try:
        metrics = quality_metrics.check_metrics(args.metrics)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    out = args.out or REPO_ROOT / "runs" / "eval" / re.sub(r"[^\w.+-]", "_", label)
    try:
        atomic.check_replaceable(out, "run.json", "an evaluation folder")
    except OSError as exc:
        raise CliError(f"--out: {exc}") from exc
    return {"scales": scales, "sets": sets, "models": models, "label": label, "paper_row": paper_row,
            "metrics": metrics, "out": out}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        with warnings_as_lines(PROG), atomic.interrupts_as_exceptions():
            try:
                return run(args)
            except KeyboardInterrupt as exc:
                message = atomic.interrupted_message(
                    exc, f"the previous report in {args.out or 'the output folder'} (if any) is unchanged")
                print(f"{PROG}: error: {message}", file=sys.stderr)
                return atomic.exit_status(exc)
    except (CliError, datasets.ModifiedSetError, deploy_net.ModelError, deploy_net.NetOutputError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def run(args):
    p = plan(args)
    for stale in atomic.remove_stale_temporaries(p["out"]):
        print(f"{PROG}: {stale.describe()}", file=sys.stderr)
    done = eval_run.evaluate_to_folder(
        p["out"], data_root=args.data_root, sets=p["sets"], scales=p["scales"], label=p["label"],
        paper_row=p["paper_row"], models=p["models"] or None, metrics=p["metrics"], gpu=args.gpu,
        baseline=not args.no_baseline, save_images=not args.no_images, jobs=args.jobs,
        precision=args.precision, progress=not args.quiet, command=["tools/eval.py"] + args.argv,
        allow_modified_sets=args.allow_modified_sets, self_ensemble=args.self_ensemble)
    for name, problems in done.modified_sets.items():
        print(f"{PROG}: warning: {name} is a modified set ({'; '.join(problems)}): its means are marked "
              f"† and not compared with the paper", file=sys.stderr)
    for note in done.result.not_computable:
        print(f"{PROG}: warning: {note}", file=sys.stderr)
    if not args.quiet:
        print(done.table)
        print(f"wrote {done.out} ({len(done.result.records)} images in {done.seconds:.1f} s)", file=sys.stderr)
    if done.result.errors:
        for e in done.result.errors:
            print(f"{PROG}: error: {e}", file=sys.stderr)
        print(f"{PROG}: error: {len(done.result.errors)} image(s) could not be evaluated; the summary leaves them out "
              f"(its means are marked 'n of N')", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
