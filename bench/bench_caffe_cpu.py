"""Caffe's CPU speed, side by side in one run: the build without the CPU speed patches,
the same with OpenBLAS's AVX-512 kernels forced, the patched build, and OpenCV's dnn
on the same prototxt and weights; the machine's SGEMM rate as the reference.

Each backend runs in a child process of its own (each Caffe build is a different
pycaffe; OpenMP and OpenBLAS read their settings once), as one function below
(``run_<backend>``): adding a backend (ONNX Runtime, once tools/export.py exists)
is one more function and one more entry in BACKENDS.

Usage::

    pip install 'opencv-python-headless<5'          # OpenCV 5 has no Caffe importer
    tools/install_caffe.sh --stock-cpu --python .venv/bin/python   # the baseline build
    python bench/bench_caffe_cpu.py [--stock PREFIX] [--patched PREFIX]

Writes its section of docs/benchmarks.md (``--no-write`` to only print).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchtable  # noqa: E402

REPO = benchtable.REPO_ROOT
TRAIN_PROTOTXT = REPO / "prototxt" / "ddsr_x3_train.prototxt"
DEPLOY_PROTOTXT = REPO / "prototxt" / "ddsr_x3_deploy.prototxt"
DEMO_PROTOTXT = REPO / "prototxt" / "demo_x3_train.prototxt"

# name -> (kind, what it is)
CASES = {
    "train64": ("train", "DDSR-18 x3 fwd+bwd, batch 64 of 7x7 LR patches"),
    "train128": ("train", "DDSR-18 x3 fwd+bwd, batch 128 (the paper's batch)"),
    "deploy170": ("deploy", "DDSR-18 x3 deploy forward, 170x170 LR -> 510x510"),
    "deploy_bsd": ("deploy", "DDSR-18 x3 deploy forward, 160x107 LR (a BSD200 image at x3)"),
    "demo_iter": ("solver", "demo_x3 training iteration (Adam), batch 32"),
}
CASE_SHAPES = {"train64": 64, "train128": 128, "deploy170": (170, 170), "deploy_bsd": (107, 160),
               "demo_iter": 32}


# --- in the child process -------------------------------------------------------------

def _load_nets_module():
    from ddsr.model import nets

    return nets


def _train_prototxt(path, batch):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    nets = _load_nets_module()
    net = caffe_pb2.NetParameter()
    text_format.Merge(Path(path).read_text(), net)
    net = nets.with_input_layers(net, {"data": (batch, 1, 7, 7), "label": (batch, 1, 21, 21)})
    return nets.net_text(net)


def _write_temp(text):
    f = tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False)
    f.write(text)
    f.close()
    return f.name


def conv_flops(net, backward):
    """FLOPs of the Convolution and Deconvolution layers of a pycaffe net (one pass)."""
    total = 0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type not in ("Convolution", "Deconvolution"):
            continue
        w = net.params[name][0].data
        bottom = net.blobs[net.bottom_names[name][0]].data
        top = net.blobs[net.top_names[name][0]].data
        # every weight once per position of the GEMM side (a convolution's top, a
        # deconvolution's bottom) and image
        gemm_side = top if layer.type == "Convolution" else bottom
        macs = gemm_side.shape[0] * np.prod(gemm_side.shape[2:]) * w.size
        # forward; backward: weight gradient, and the bottom gradient except for the
        # layer on the data (Caffe does not compute it)
        passes = 1
        if backward:
            passes += 1 + (net.bottom_names[name][0] != "data")
        total += 2 * macs * passes
    return int(total)


def _best(fn, repeats):
    fn()  # warm-up: memory, OpenBLAS buffers, thread pools
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run_caffe(case, weights, repeats):
    import caffe

    caffe.set_mode_cpu()
    caffe.set_random_seed(1)
    rng = np.random.default_rng(0)
    kind = CASES[case][0]
    if kind == "train":
        net = caffe.Net(_write_temp(_train_prototxt(TRAIN_PROTOTXT, CASE_SHAPES[case])), caffe.TRAIN)
        for blob in ("data", "label"):
            net.blobs[blob].data[...] = rng.random(net.blobs[blob].shape)
        seconds = _best(lambda: (net.forward(), net.backward()), repeats)
        return seconds, conv_flops(net, backward=True)
    if kind == "deploy":
        net = caffe.Net(str(DEPLOY_PROTOTXT), str(weights), caffe.TEST)
        h, w = CASE_SHAPES[case]
        net.blobs["data"].reshape(1, 1, h, w)
        net.reshape()
        net.blobs["data"].data[...] = np.load(weights + ".input.npy")[:, :, :h, :w]
        seconds = _best(net.forward, repeats)
        np.save(weights + f".{case}.caffe.npy", net.blobs["recon"].data)
        return seconds, conv_flops(net, backward=False)
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    solver = caffe_pb2.SolverParameter()
    solver.net = _write_temp(_train_prototxt(DEMO_PROTOTXT, CASE_SHAPES[case]))
    solver.type, solver.base_lr, solver.momentum, solver.momentum2 = "Adam", 1e-4, 0.9, 0.999
    solver.lr_policy, solver.max_iter, solver.display = "fixed", 10 ** 6, 0
    solver.solver_mode = caffe_pb2.SolverParameter.CPU
    s = caffe.get_solver(_write_temp(text_format.MessageToString(solver)))
    for blob in ("data", "label"):
        s.net.blobs[blob].data[...] = rng.random(s.net.blobs[blob].shape)
    steps = 10
    seconds = _best(lambda: s.step(steps), repeats) / steps
    return seconds, conv_flops(s.net, backward=True)


def run_opencv(case, weights, repeats):
    import cv2

    if CASES[case][0] != "deploy":
        return None
    net = cv2.dnn.readNetFromCaffe(str(DEPLOY_PROTOTXT), str(weights))
    h, w = CASE_SHAPES[case]
    x = np.ascontiguousarray(np.load(weights + ".input.npy")[:, :, :h, :w], np.float32)

    def forward():
        net.setInput(x)
        return net.forward()

    seconds = _best(forward, repeats)
    ref = np.load(weights + f".{case}.caffe.npy")
    out = forward()
    err = float(np.abs(out - ref).max() / np.abs(ref).max())
    return seconds, None, err


def make_weights(path):
    """Random DDSR-18 x3 weights (Caffe's fillers, seed 1) and a random input, shared by all."""
    import caffe

    caffe.set_mode_cpu()
    caffe.set_random_seed(1)
    net = caffe.Net(str(DEPLOY_PROTOTXT), caffe.TEST)
    net.save(str(path))
    np.save(str(path) + ".input.npy", np.random.default_rng(0).random((1, 1, 170, 170), np.float32))


def worker(argv):
    backend, case, weights, repeats = argv[0], argv[1], argv[2], int(argv[3])
    if backend == "init":
        make_weights(weights)
        return
    fn = run_opencv if backend == "opencv" else run_caffe
    result = fn(case, weights, repeats)
    print("RESULT " + json.dumps(result))


# --- in the parent --------------------------------------------------------------------

def caffe_prefix(stock):
    cmd = [str(REPO / "tools" / "install_caffe.sh"), "--python", sys.executable, "--print-prefix"]
    return Path(subprocess.run(cmd + (["--stock-cpu"] if stock else []), check=True,
                               capture_output=True, text=True).stdout.strip())


def backends(stock, patched):
    """name -> (label, environment additions) of the backends to run."""
    def caffe_env(prefix, **extra):
        return dict(PYTHONPATH=str(prefix / "lib" / "python3" / "dist-packages"), **extra)

    return {
        "stock": ("Caffe, unpatched", caffe_env(stock)),
        "stock_avx512": ("Caffe, unpatched, OPENBLAS_CORETYPE=SkylakeX",
                         caffe_env(stock, OPENBLAS_CORETYPE="SkylakeX")),
        "patched": ("Caffe, patched (tools/caffe-patches)", caffe_env(patched)),
        "opencv": ("OpenCV dnn", caffe_env(patched)),
    }


def run_child(backend, env_add, case, weights, repeats):
    env = dict(os.environ, GLOG_minloglevel="2", **env_add)
    kind = "opencv" if backend == "opencv" else ("init" if case == "init" else "caffe")
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, case, str(weights),
                           str(repeats)], env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"bench_caffe_cpu: {backend} {case} failed:\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return None


def sgemm_rate(n=2048, repeats=5):
    a = np.random.default_rng(0).random((n, n), np.float32)
    b = a.T.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stock", type=Path, help="unpatched Caffe install folder "
                   "(default: tools/install_caffe.sh --stock-cpu --print-prefix)")
    p.add_argument("--patched", type=Path, help="patched Caffe install folder "
                   "(default: tools/install_caffe.sh --print-prefix)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per cell, best kept (default 2)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args()
    stock = args.stock or caffe_prefix(stock=True)
    patched = args.patched or caffe_prefix(stock=False)
    for prefix in (stock, patched):
        if not (prefix / ".ddsr-build-complete").is_file():
            sys.exit(f"bench_caffe_cpu: no finished Caffe build in {prefix} "
                     "(build it with tools/install_caffe.sh, --stock-cpu for the unpatched one)")
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.exit("bench_caffe_cpu: OpenCV is missing: pip install 'opencv-python-headless<5'")

    load_start = os.getloadavg()
    gemm = sgemm_rate()
    table = backends(stock, patched)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "ddsr_x3_random.caffemodel"
        run_child("patched", table["patched"][1], "init", weights, 1)
        rows = []
        for case in args.cases:
            flops, base = None, None
            for backend, (label, env_add) in table.items():
                r = run_child(backend, env_add, case, weights, args.repeats)
                if r is None:
                    continue
                seconds = r[0]
                flops = r[1] or flops
                base = seconds if backend == "stock" else base
                rows.append((case, label, seconds, flops, base, r[2] if len(r) > 2 else None))
                print(f"{case:10s} {label:48s} {seconds * 1e3:9.1f} ms", flush=True)
    gemm_after = sgemm_rate()
    load_end = os.getloadavg()

    lines = [
        "## Caffe on the CPU: unpatched, patched, OpenCV dnn (`bench/bench_caffe_cpu.py`)",
        "",
        f"One run, {args.repeats} timed repetitions per cell after a warm-up (best kept), each "
        "backend in a process of its own, same prototxt (`prototxt/ddsr_x3_*`, "
        "`prototxt/demo_x3_train.prototxt`) and the same random weights (Caffe's fillers). "
        "GFLOP/s counts the convolution and deconvolution multiply-adds (x2; backward: weight "
        "and bottom gradients). Reference: numpy float32 SGEMM 2048^3 on all cores, "
        f"{gemm:.0f} GFLOP/s before the run and {gemm_after:.0f} after.",
        "",
        "| work | backend | ms | GFLOP/s | of SGEMM | speed-up vs unpatched |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case, label, seconds, flops, base, err in rows:
        rate = flops / seconds / 1e9 if flops else float("nan")
        speed = f"{base / seconds:.2f}x" if base else ""
        note = f" (max rel. diff to Caffe {err:.0e})" if err is not None else ""
        lines.append(f"| {CASES[case][1]} | {label}{note} | {seconds * 1e3:.0f} | {rate:.0f} | "
                     f"{rate / gemm:.2f} | {speed} |")
    lines += [
        "",
        f"Machine: {benchtable.cpu_model()}, {os.cpu_count()} cores; load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end (the machine is "
        f"shared: cells measured under load are slower). {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "Threads: OpenMP's default (all cores) for the patched build; OpenBLAS's default for "
        "the unpatched one. The unpatched row with `OPENBLAS_CORETYPE=SkylakeX` separates the "
        "two causes: Debian's OpenBLAS 0.3.21 does not know this CPU and runs its SSE3 kernels "
        "(patch 0005 chooses the AVX-512 ones), and the per-image loop (patches 0006, 0007).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        benchtable.write_section("bench_caffe_cpu", text)


if __name__ == "__main__":
    main()
