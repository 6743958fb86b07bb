#!/usr/bin/env python3
"""Export a Caffe deploy net and its weights to ONNX and to files OpenCV's dnn loads.

--out FILE.onnx writes the ONNX graph (opset 17, dynamic height and width, checked with
onnx.checker) and FILE.json beside it: what to do around the net (input kind, replicate
padding, scale, output crop and offset), from the deploy net's sidecar <deploy>.eval.json and
the same net options as tools/eval.py. --opencv DIR writes DIR/<deploy>.prototxt,
DIR/<deploy>.caffemodel (channel-shared PReLU slopes stored as [1]: OpenCV 4 refuses Caffe's
0-D blobs) and DIR/<deploy>.json. --verify then runs ONNX Runtime and OpenCV dnn (on the ONNX
file and on the OpenCV files) against pycaffe on noise and on real photographs at several
sizes, and fails unless every output is within 1e-4. Prints Python that runs the export.

Examples:
  tools/export.py --model models/fsrcnn_x3_deploy.prototxt --weights models/fsrcnn_x3.caffemodel \\
      --out exported/fsrcnn_x3.onnx --opencv exported/opencv --verify
  tools/export.py --experiment ddsr_x3 --out exported/ddsr_x3.onnx --verify   # newest snapshot
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
from ddsr.evaluation import deploy_net as ev  # noqa: E402
from ddsr.inference import caffe_model, record as rec  # noqa: E402

PROG = "export.py"


class CliError(Exception):
    """A bad input: one line, exit status 2."""


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("the model")
    what.add_argument("--model", type=Path, metavar="DEPLOY", help="deploy prototxt")
    what.add_argument("--weights", type=Path, metavar="CAFFEMODEL",
                      help="trained weights (with --experiment: default its newest snapshot)")
    what.add_argument("--experiment", metavar="NAME",
                      help="an experiment of experiments.yaml: prototxt/NAME_deploy.prototxt and its snapshots")
    what.add_argument("--scale", type=int, metavar="S",
                      help="default: the sidecar's, the net's output factor, or the x<S> in its file name")
    net = ev.add_settings_arguments(p, tiles=False, gpu=False)
    net.add_argument("--name", default=None, help="model name in the record (default: the sidecar's)")
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, metavar="FILE.onnx", help="write the ONNX model (and FILE.json)")
    out.add_argument("--opencv", type=Path, metavar="DIR", help="write a prototxt + caffemodel for OpenCV 4")
    out.add_argument("--verify", action="store_true",
                     help="compare ONNX Runtime and OpenCV with pycaffe (max |difference| <= 1e-4, or exit 1)")
    out.add_argument("--verify-image", type=Path, nargs="+", default=None, metavar="IMAGE",
                     help="real images for --verify (default: photographs bundled with scikit-image)")
    return p


def plan(args):
    if (args.model is None) == (args.experiment is None):
        raise CliError("give either --model DEPLOY --weights CAFFEMODEL or --experiment NAME")
    if args.out is None and args.opencv is None:
        raise CliError("nothing to write: give --out FILE.onnx and/or --opencv DIR")
    if args.out is not None and args.out.suffix != ".onnx":
        raise CliError(f"--out {args.out}: the file name must end in .onnx")
    if args.verify_image and not args.verify:
        raise CliError("--verify-image needs --verify")
    if args.experiment is not None:
        deploy, weights, scale = caffe_model.experiment_model(args.experiment, REPO_ROOT, args.weights)
    else:
        if args.weights is None:
            raise CliError("--model needs --weights")
        deploy, weights, scale = args.model, args.weights, None
    if args.pad_input is not None and args.pad_input < 0:
        raise CliError(f"--pad-input must be >= 0, got {args.pad_input}")
    return deploy, weights, args.scale or scale


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with warnings_as_lines(PROG):
            return run(args)
    except (CliError, ev.ModelError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def run(args):
    from ddsr.inference.verify import VerifyError

    deploy, weights, scale = plan(args)
    model = caffe_model.read_model(deploy, weights)
    scale = scale or ev.infer_scale(deploy, model.factor)
    if scale is None:
        raise CliError(f"cannot tell the scale of {deploy}: give --scale")
    settings, sidecar = ev.resolve_settings(deploy, scale, **ev.settings_overrides(args))
    record = rec.processing_record(model, scale, settings, name=args.name)
    print(f"{deploy} + {weights}: x{scale}, input {settings.input}, pad {settings.pad_input}, "
          f"offset {tuple(settings.output_offset)} ({'sidecar ' + str(sidecar) if sidecar else 'no sidecar'})")
    onnx_path = opencv_files = None
    if args.out is not None:
        from ddsr.inference.onnx_export import export_onnx

        onnx_path, json_path = export_onnx(model, args.out, record)
        print(f"wrote {onnx_path} and {json_path}")
    if args.opencv is not None:
        from ddsr.inference.opencv_export import export_opencv

        prototxt, caffemodel, json_path = export_opencv(model, args.opencv, record)
        opencv_files = (prototxt, caffemodel)
        print(f"wrote {prototxt}, {caffemodel} and {json_path}")
    status = 0
    if args.verify:
        from ddsr.inference import verify

        images = None
        if args.verify_image:
            from ddsr.matlab import imread

            images = [(p.name, imread(p)) for p in args.verify_image]
        inputs = verify.verify_inputs(images=images)
        try:
            results = verify.verify_export(model, onnx_path, opencv_files, inputs=inputs)
        except VerifyError as exc:
            print(f"{PROG}: error: verify: {exc}", file=sys.stderr)
            status = 1
        else:
            worst = {}
            for r in results:
                worst[r.backend] = max(worst.get(r.backend, 0.0), r.max_abs_diff)
            real = len({label.rsplit(" ", 1)[0] for label, _ in inputs} - {"noise"})
            print(f"verify: {len(inputs)} inputs (noise and {real} real images at {len(verify.DEFAULT_SIZES)} sizes) "
                  f"against pycaffe, tolerance {verify.TOLERANCE:g}:")
            for backend, diff in worst.items():
                print(f"  {backend:20s} max |difference| {diff:.2e}  ok")
    for runtime, text in rec.usage_snippets(record, onnx_path, opencv_files).items():
        print(f"\n# Run it with {'ONNX Runtime' if runtime == 'onnxruntime' else 'OpenCV dnn'}:\n{text}")
    return status


if __name__ == "__main__":
    sys.exit(main())
