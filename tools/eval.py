#!/usr/bin/env python3
"""Evaluate bicubic or a Caffe deploy net on the SR test sets with the paper's protocol.

Writes into --out: per_image.csv, summary.json ({"Set5": {"x3": {"psnr", "ssim", "ifc"}}}),
run.json (settings, models, timings, errors), table3.md (the paper's Table 3 layout with the
published values and differences), bicubic/ (the bicubic baseline beside a model row) and
images/<Set>/x<s>/<image>.png (colour SR images). --self-ensemble adds x8/ (the same files for
the mean over the 8 flips and rotations), a row "<name> (x8)" of its own beside the single-pass
row; the published values are single-pass.

Examples:
  tools/eval.py --method bicubic --scale 2 3 4 --sets Set5 Set14 BSD200 --out runs/eval/bicubic
  tools/eval.py --model prototxt/ddsr_x{scale}_deploy.prototxt \\
      --weights snapshots/ddsr_x{scale}_iter_100000.caffemodel --scale 2 3 4 --out runs/eval/ddsr
"""

import argparse
import hashlib
import json
import platform
import re
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT / "python"))

import ddsr  # noqa: E402
from ddsr.evaluation import deploy_net, metrics as quality_metrics, protocol, published, report, run as eval_run, upscaler
from ddsr.atomic import write_json_atomic, write_text_atomic  # noqa: E402

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
    net = p.add_argument_group("how a net is run (defaults: the net's sidecar <deploy>.eval.json, if any)")
    net.add_argument("--input", choices=deploy_net.INPUT_KINDS, default=None,
                     help="feed the net the LR image (lr: DDSR, FSRCNN; the default) or the bicubic-upscaled "
                          "image (bicubic: SRCNN, VDSR)")
    net.add_argument("--pad-input", type=int, default=None, metavar="N",
                     help="replicate-pad the net input by N pixels and crop the output back "
                          "(N*scale for --input lr, N for --input bicubic)")
    net.add_argument("--output-offset", type=int, nargs=2, default=None, metavar=("DY", "DX"),
                     help="the net's output pixel (i,j) estimates HR pixel (i+DY, j+DX); shift it back")
    net.add_argument("--tile", type=int, default=None, metavar="SIZE",
                     help="run the net on SIZE x SIZE input tiles (for images too large for memory)")
    net.add_argument("--tile-overlap", type=int, default=None, metavar="N",
                     help="context pixels around each tile (default: the net's receptive-field radius, "
                          "which makes tiled and whole-image results equal)")
    net.add_argument("--gpu", type=int, default=None, metavar="N",
                     help="run Caffe on GPU N (needs a CUDA build of pycaffe; CPU otherwise)")
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
    sidecar = deploy_net.sidecar_path(model)
    if sidecar is not None:
        try:
            scale = json.loads(sidecar.read_text()).get("scale")
        except (OSError, ValueError):
            scale = None
        if isinstance(scale, int):
            return scale
    found = re.findall(r"(?:^|[_\-.])x(\d+)(?=[_\-.]|$)", Path(model).stem)
    if len(set(found)) == 1:
        return int(found[0])
    raise CliError(f"cannot tell the scale of {model}: give --scale")


def _default_label(model_template):
    stem = Path(model_template).stem
    for part in ("_deploy", "-deploy", "_x{scale}", "-x{scale}", "x{scale}"):
        stem = stem.replace(part, "")
    return stem or "model"


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
            protocol.list_set_images(args.data_root, name)
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
                settings, sidecar = deploy_net.resolve_settings(
                    deploys[s], s, input=args.input, pad_input=args.pad_input,
                    output_offset=tuple(args.output_offset) if args.output_offset else None,
                    tile=args.tile, tile_overlap=args.tile_overlap)
            except deploy_net.ModelError as exc:
                raise CliError(str(exc)) from exc
            models[s] = {"deploy": deploys[s], "weights": weights[s], "settings": settings, "sidecar": sidecar}
    if args.name:
        label = args.name
    elif args.method == "bicubic":
        label = "Bicubic"
    else:
        named = [m["settings"].name for m in models.values() if m["settings"].name]
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
    return {"scales": scales, "sets": sets, "models": models, "label": label, "paper_row": paper_row,
            "metrics": metrics, "out": out}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    shown = warnings.showwarning
    warnings.showwarning = lambda message, *a, **k: print(f"{PROG}: warning: {message}", file=sys.stderr)
    try:
        return run(args)
    except (CliError, deploy_net.ModelError, deploy_net.NetOutputError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown


def run(args):
    p = plan(args)
    scales, sets, models, out = p["scales"], p["sets"], p["models"], p["out"]
    started = time.time()
    net_params = {}
    if models:
        if args.gpu is not None:
            deploy_net.use_gpu(args.gpu)
        # Check every scale's net and weights before the first image, then free them again.
        for s, m in models.items():
            net, net_params[s] = deploy_net.load_net(m["deploy"], m["weights"])
            del net

    def upscaler_for_scale(scale):
        if not models:
            return protocol.BicubicUpscaler()
        m = models[scale]
        net, net_param = deploy_net.load_net(m["deploy"], m["weights"])
        return upscaler.CaffeUpscaler(net, scale, m["settings"], net_param=net_param, label=p["label"])

    def save_image(set_name, scale, image, sr8):
        report.write_png_atomic(out / "images" / set_name / f"x{scale}" / f"{image.name}.png",
                                protocol.colour_output(image, sr8))

    total = sum(len(protocol.list_set_images(args.data_root, s)) for s in sets) * len(scales)
    from tqdm import tqdm

    with tqdm(total=total * (2 if args.self_ensemble else 1), unit="img", disable=args.quiet,
              file=sys.stderr) as bar:
        result = eval_run.evaluate(args.data_root, sets, scales, upscaler_for_scale, metrics=p["metrics"],
                             baseline=bool(models) and not args.no_baseline,
                             image_sink=None if args.no_images else save_image, progress=bar,
                             jobs=args.jobs)
        ensemble = None
        if args.self_ensemble:
            from ddsr.inference.ensemble import SelfEnsembleUpscaler

            def save_x8(set_name, scale, image, sr8):
                report.write_png_atomic(out / "x8" / "images" / set_name / f"x{scale}" / f"{image.name}.png",
                                        protocol.colour_output(image, sr8))

            ensemble = eval_run.evaluate(args.data_root, sets, scales,
                                         lambda s: SelfEnsembleUpscaler(upscaler_for_scale(s)),
                                         metrics=p["metrics"], image_sink=None if args.no_images else save_x8,
                                         progress=bar, jobs=args.jobs)
    elapsed = time.time() - started

    summary = report.summarize(result.records, p["metrics"])
    meta = {
        "name": p["label"],
        "paper_row": p["paper_row"],
        "method": "bicubic" if not models else "caffe",
        "scales": scales,
        "sets": sets,
        "data_root": str(args.data_root),
        "metrics": list(p["metrics"]),
        "images": {s: len(protocol.list_set_images(args.data_root, s)) for s in sets},
        "models": {f"x{s}": {
            "deploy": str(m["deploy"]), "weights": str(m["weights"]), "weights_sha256": _sha256(m["weights"]),
            "sidecar": str(m["sidecar"]) if m["sidecar"] else None, "input": m["settings"].input,
            "pad_input": m["settings"].pad_input, "output_offset": list(m["settings"].output_offset),
            "tile": m["settings"].tile,
            "tile_overlap": (m["settings"].tile_overlap if m["settings"].tile_overlap is not None
                             else (upscaler.context_radius(net_params[s]) if m["settings"].tile else None)),
        } for s, m in models.items()},
        "device": f"gpu {args.gpu}" if args.gpu is not None else "cpu",
        "forward_ms_mean": report.mean_forward_ms(result.records),
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()} | {"total": round(elapsed, 3)},
        "errors": result.errors,
        "command": ["tools/eval.py"] + args.argv,
        "versions": {"ddsr": ddsr.__version__, "python": platform.python_version(),
                     "numpy": __import__("numpy").__version__},
    }
    report.write_csv_atomic(out / "per_image.csv", result.records)
    write_json_atomic(out / "summary.json", summary)
    write_json_atomic(out / "run.json", meta)
    rows = [report.Row(p["label"], summary, p["paper_row"], str(out))]
    if result.baseline:
        base_summary = report.summarize(result.baseline, p["metrics"])
        base_meta = {"name": "Bicubic", "paper_row": "Bicubic", "method": "bicubic", "scales": scales,
                     "sets": sets, "data_root": str(args.data_root), "metrics": list(p["metrics"]),
                     "baseline_of": p["label"], "forward_ms_mean": report.mean_forward_ms(result.baseline)}
        report.write_csv_atomic(out / "bicubic" / "per_image.csv", result.baseline)
        write_json_atomic(out / "bicubic" / "summary.json", base_summary)
        write_json_atomic(out / "bicubic" / "run.json", base_meta)
        rows.append(report.Row("Bicubic", base_summary, "Bicubic", str(out / "bicubic")))
    if ensemble is not None:
        x8_summary = report.summarize(ensemble.records, p["metrics"])
        x8_label = f"{p['label']} (x8)"
        x8_meta = dict(meta, name=x8_label, paper_row=None, self_ensemble=8, single_pass_of=p["label"],
                       forward_ms_mean=report.mean_forward_ms(ensemble.records), errors=ensemble.errors)
        report.write_csv_atomic(out / "x8" / "per_image.csv", ensemble.records)
        write_json_atomic(out / "x8" / "summary.json", x8_summary)
        write_json_atomic(out / "x8" / "run.json", x8_meta)
        rows.insert(1, report.Row(x8_label, x8_summary, None, str(out / "x8")))
        result.errors.extend(f"(x8) {e}" for e in ensemble.errors)
    table = report.table3_markdown(rows, precision=args.precision, title=f"## Table 3: {p['label']}")
    write_text_atomic(out / "table3.md", table)
    if not args.quiet:
        print(table)
        print(f"wrote {out} ({len(result.records)} images in {elapsed:.1f} s)", file=sys.stderr)
    if result.errors:
        for e in result.errors:
            print(f"{PROG}: error: {e}", file=sys.stderr)
        print(f"{PROG}: error: {len(result.errors)} image(s) could not be evaluated; the summary leaves them out",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
