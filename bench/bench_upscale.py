#!/usr/bin/env python3
"""Upscaling one 1-Mpixel photo at x3 with DDSR-18: Caffe (CPU) vs ONNX Runtime vs OpenCV dnn.

The photo is scikit-image's bundled ``coffee`` resized to 816 x 1224 (0.999 Mpixel; content does
not change the time of a convolutional net). The net is prototxt/ddsr_x3_deploy.prototxt with
random weights (the fillers, seeded) unless --weights is given: the cost of DDSR-18 does not
depend on its weights. Each backend runs in its own child process, so that its peak resident
memory is its own:

- caffe: the project's path (ddsr.inference.upscale: tiles chosen for --max-memory, default 2 GB,
  since Caffe keeps an im2col buffer per layer: about 450 kB per LR pixel for DDSR-18 at x3);
- onnxruntime and opencv: the exported model (tools/export.py: ONNX, and the OpenCV Caffe files)
  on the whole image at once.

All three outputs are compared (max |difference| on [0, 1]). Writes the bench_upscale section of
docs/benchmarks.md.

Example:
  flock /tmp/ddsr-heavy.lock bench/bench_upscale.py
  bench/bench_upscale.py --megapixels 0.05 --no-write      # a quick try
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT / "python"))

from benchtable import cpu_model, write_section  # noqa: E402

BACKENDS = ("caffe", "onnxruntime", "opencv")
DEPLOY = REPO_ROOT / "prototxt" / "ddsr_x3_deploy.prototxt"


def make_photo(path, megapixels):
    """The bundled ``coffee`` photo (400 x 600) resized by MATLAB bicubic to about ``megapixels``."""
    import numpy as np

    from ddsr.atomic import write_png_atomic
    from ddsr.matlab import imresize
    from ddsr.workflows.demo import load_bundled_image

    coffee = load_bundled_image("coffee")
    factor = (megapixels * 1e6 / (coffee.shape[0] * coffee.shape[1])) ** 0.5
    shape = (int(round(coffee.shape[0] * factor)), int(round(coffee.shape[1] * factor)))
    write_png_atomic(path, np.asarray(imresize(coffee, output_shape=shape), dtype=np.uint8))
    return shape


class _ForwardAsNet:
    """A forward function (ONNX Runtime, OpenCV) with the few pycaffe ``Net`` members that
    ``ddsr.evaluation.upscaler.forward_padded`` uses, so that the evaluation's exact tiling runs it."""

    class _Blob:
        def __init__(self):
            import numpy as np

            self.data = np.zeros((1, 1, 1, 1), np.float32)

        def reshape(self, *shape):
            import numpy as np

            self.data = np.zeros(shape, np.float32)

    def __init__(self, forward, factor):
        self.forward_fn, self.factor = forward, factor
        self.inputs, self.outputs = ["x"], ["y"]
        self.blobs = {"x": self._Blob(), "y": self._Blob()}

    def reshape(self):
        _, _, h, w = self.blobs["x"].data.shape
        self.blobs["y"].reshape(1, 1, self.factor * h, self.factor * w)

    def forward(self):
        self.blobs["y"].data = self.forward_fn(self.blobs["x"].data)


def child(backend, folder, max_memory, tile=None):
    """Run one backend on folder/photo.png; print its measurements as JSON."""
    import resource

    import numpy as np

    start = time.perf_counter()
    os.environ.setdefault("GLOG_minloglevel", "2")
    from ddsr.inference.upscale import read_image

    info = json.loads((folder / "model.json").read_text())
    image = read_image(folder / "photo.png", info["scale"])
    x = image.lr_y
    if backend == "caffe":
        import dataclasses

        from ddsr.evaluation.upscaler import CaffeUpscaler, load_upscaler
        from ddsr.inference.upscale import choose_tile

        up = load_upscaler(DEPLOY, folder / "weights.caffemodel", info["scale"])
        tile = choose_tile(up, image, max_memory)
        if tile is not None:
            up = CaffeUpscaler(up.net, up.scale, dataclasses.replace(up.settings, tile=tile), net_param=up.net_param)
        t0 = time.perf_counter()
        y = up.sr(x)
        forward = time.perf_counter() - t0
    else:
        from ddsr.evaluation.upscaler import context_radius, forward_padded
        from ddsr.evaluation.deploy_net import parse_deploy

        if backend == "onnxruntime":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])

            def run_net(a):
                return session.run(None, {info["input_name"]: a})[0]
        else:
            import cv2

            net = cv2.dnn.readNetFromCaffe(str(folder / "opencv" / "model.prototxt"),
                                           str(folder / "opencv" / "model.caffemodel"))

            def run_net(a):
                net.setInput(a)
                return net.forward()
        factor = info["scale"] if info["input"] == "lr" else 1
        overlap = context_radius(parse_deploy(DEPLOY)) if tile else 0
        t0 = time.perf_counter()
        y = forward_padded(_ForwardAsNet(run_net, factor), x, factor, pad=info["pad_input"], tile=tile,
                           overlap=overlap)
        forward = time.perf_counter() - t0
    np.save(folder / f"sr_{backend}.npy", y)
    print(json.dumps({"backend": backend, "forward_s": forward, "total_s": time.perf_counter() - start,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "tile": tile,
                      "lr": list(x.shape), "sr": list(y.shape)}))


def prepare(folder, weights, megapixels):
    """The photo, the weights (random if none given), the ONNX and OpenCV exports (in a child: not timed)."""
    code = f"""
import os, sys
os.environ["GLOG_minloglevel"] = "2"
sys.path.insert(0, {str(REPO_ROOT / 'python')!r})
from pathlib import Path
import caffe
folder = Path({str(folder)!r})
weights = {str(weights) if weights else None!r}
if weights is None:
    caffe.set_random_seed(2017)
    caffe.Net({str(DEPLOY)!r}, caffe.TEST).save(str(folder / "weights.caffemodel"))
else:
    os.symlink(os.path.abspath(weights), folder / "weights.caffemodel")
from ddsr.evaluation.deploy_net import resolve_settings
from ddsr.inference import caffe_model, onnx_export, opencv_export, record
model = caffe_model.read_model({str(DEPLOY)!r}, folder / "weights.caffemodel")
settings, _ = resolve_settings(model.deploy, 3)
rec = record.processing_record(model, 3, settings)
onnx_export.export_onnx(model, folder / "model.onnx", rec)
opencv_export.export_opencv(model, folder / "opencv", rec, stem="model")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_upscale.py: error: preparing the model failed:\n{proc.stderr}")
    return make_photo(folder / "photo.png", megapixels)


def markdown(results, shape, diffs, args, load):
    lr_px = shape[0] * shape[1]
    lines = [
        f"One {shape[1]} x {shape[0]} photo ({lr_px / 1e6:.3f} Mpixel, scikit-image's `coffee` resized) upscaled "
        f"x3 to {3 * shape[1]} x {3 * shape[0]} by DDSR-18 (`prototxt/ddsr_x3_deploy.prototxt`, "
        f"{'random weights: the time does not depend on them' if not args.weights else args.weights}), "
        f"the Y channel through the net. Each backend in its own process, one run each. Machine: {cpu_model()}, "
        f"{os.cpu_count()} cores (load average {load:.1f} at the start: shared, so wall times vary), "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}.",
        "",
        "| backend | how | forward s | total s | peak RSS MB | LR Mpixel/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    how = {"caffe": "pycaffe, `ddsr.inference.upscale` (what `tools/upscale.py` runs)",
           "onnxruntime": "ONNX Runtime CPU, `tools/export.py` ONNX",
           "opencv": "OpenCV dnn `readNetFromCaffe`, `tools/export.py --opencv`"}
    for r in results:
        detail = how[r["backend"]]
        if r["backend"] == "caffe":
            detail += (f", tiles of {r['tile']} LR px chosen for --max-memory 2 GB" if r["tile"] else ", whole image")
        else:
            detail += f", tiles of {r['tile']} LR px" if r.get("tile") else ", whole image"
        lines.append(f"| {r['backend']} | {detail} | {r['forward_s']:.1f} | {r['total_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {lr_px / 1e6 / r['forward_s']:.4f} |")
    lines += ["", "Max |difference| of the SR Y (float, [0, 1]) between the backends of one run: " +
              (", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) or "-") + " (all within 4e-5 of pycaffe in "
              "`tools/export.py --verify`).",
              "`forward`: the net alone (Caffe: all tiles); `total`: the child process from start to end "
              "(imports, loading, reading the photo, the forward). Peak RSS: the child's `ru_maxrss`. "
              "DDSR-18 costs 1.25 MFLOP per HR pixel (17 3x3x64x64 convolutions at HR resolution), "
              f"{1.25e6 * 9 * lr_px / 1e12:.1f} TFLOP here.",
              "", f"Command: `{' '.join(['bench/bench_upscale.py'] + args.argv)}`"]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="bench_upscale.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="DDSR x3 weights (default: random)")
    p.add_argument("--megapixels", type=float, default=1.0, help="size of the photo (default 1.0)")
    p.add_argument("--max-memory", type=float, default=2 * 2**30, help="Caffe's budget in bytes (default 2 GB)")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="ONNX Runtime and OpenCV on N x N LR tiles (the evaluation's exact tiling; default: whole)")
    p.add_argument("--include", type=Path, default=None, metavar="FILE",
                   help="measurements of an earlier run (JSON lines, as printed on stderr) to list as well")
    p.add_argument("--no-write", action="store_true", help="print, do not write docs/benchmarks.md")
    p.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = argv
    if args.child:
        child(args.child, args.folder, int(args.max_memory), args.tile)
        return 0
    import numpy as np

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_upscale.") as tmp:
        folder = Path(tmp)
        shape = prepare(folder, args.weights, args.megapixels)
        results = []
        for backend in args.backends:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", backend, "--folder", str(folder),
                   "--max-memory", str(args.max_memory)] + (["--tile", str(args.tile)] if args.tile else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                why = "killed by signal %d (out of memory?)" % -proc.returncode if proc.returncode < 0 else ""
                raise SystemExit(f"bench_upscale.py: error: {backend} failed {why}:\n{proc.stderr}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr)
        ref = np.load(folder / f"sr_{args.backends[0]}.npy")
        diffs = {f"{b} vs {args.backends[0]}": float(np.abs(np.load(folder / f"sr_{b}.npy") - ref).max())
                 for b in args.backends[1:]}
    if args.include:
        earlier = [json.loads(line) for line in args.include.read_text().splitlines() if line.startswith("{")]
        results = earlier + results
    text = markdown(results, shape, diffs, args, load)
    print(text)
    if not args.no_write:
        write_section("bench_upscale", "## Upscaling a 1-Mpixel photo at x3 (`bench/bench_upscale.py`)\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
