"""Caffe's CPU speed, side by side in one run: the build without the CPU speed patches,
the same with OpenBLAS's AVX-512 kernels forced, the patched build, OpenCV's dnn on the
same prototxt and weights, and ONNX Runtime on the same weights exported as
tools/export.py does; the machine's SGEMM rate as the reference.

Each backend runs in a child process of its own (each Caffe build is a different
pycaffe; OpenMP and OpenBLAS read their settings once), as one function below
(``run_<backend>``): adding a backend is one more function and one more entry in
``backends``.

Usage::

    pip install -r requirements.txt   # opencv-python-headless<5 (OpenCV 5 has no Caffe importer), onnxruntime
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


def _save_outputs(weights, case, net, gradients):
    """The net's output (and parameter gradients) for comparing the Caffe builds."""
    arrays = {"recon": net.blobs["recon"].data}
    if gradients:
        arrays.update({f"{name}/{i}": blob.diff for name, blobs in net.params.items()
                       for i, blob in enumerate(blobs)})
    np.savez(f"{weights}.{case}.{os.environ['BENCH_BACKEND']}.npz", **arrays)


def _rel(x):
    return f"{x:.0e}" if x else "0"


def max_relative_difference(a, b):
    """max |a - b| / max |b|: the difference measure of every comparison in this benchmark."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _deploy_input(weights, case):
    """The shared random input, cut to the case's size."""
    h, w = CASE_SHAPES[case]
    return np.ascontiguousarray(np.load(weights + ".input.npy")[:, :, :h, :w], np.float32)


def _relative_to_patched_caffe(out, weights, case):
    """How far a peer's deploy output is from the patched Caffe's (run before the peers)."""
    with np.load(f"{weights}.{case}.patched.npz") as caffe_outputs:
        return max_relative_difference(out, caffe_outputs["recon"])


def builds_difference(weights, case, backend, reference="stock"):
    """(forward, gradient) max relative differences of ``backend``'s outputs to ``reference``'s:
    max |a - b| / max |b| per array, the largest over the arrays (None where not saved)."""
    paths = [Path(f"{weights}.{case}.{b}.npz") for b in (backend, reference)]
    if not all(path.is_file() for path in paths):
        return None
    with np.load(paths[0]) as a, np.load(paths[1]) as b:
        rel = {k: max_relative_difference(a[k], b[k]) for k in b.files}
    grads = [v for k, v in rel.items() if k != "recon"]
    return rel["recon"], (max(grads) if grads else None)


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
        _save_outputs(weights, case, net, gradients=True)
        return seconds, conv_flops(net, backward=True)
    if kind == "deploy":
        net = caffe.Net(str(DEPLOY_PROTOTXT), str(weights), caffe.TEST)
        x = _deploy_input(weights, case)
        net.blobs["data"].reshape(*x.shape)
        net.reshape()
        net.blobs["data"].data[...] = x
        seconds = _best(net.forward, repeats)
        _save_outputs(weights, case, net, gradients=False)
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
    x = _deploy_input(weights, case)

    def forward():
        net.setInput(x)
        return net.forward()

    seconds = _best(forward, repeats)
    return seconds, None, _relative_to_patched_caffe(forward(), weights, case)


def run_onnxruntime(case, weights, repeats):
    """The same net and weights as ONNX (``ddsr.inference.onnx_export``, what tools/export.py
    writes) in ONNX Runtime's CPU provider, its default threads (all cores)."""
    import onnxruntime as ort

    from ddsr.inference.caffe_model import read_model
    from ddsr.inference.onnx_export import build_onnx

    if CASES[case][0] != "deploy":
        return None
    session = ort.InferenceSession(build_onnx(read_model(DEPLOY_PROTOTXT, weights)).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = _deploy_input(weights, case)
    seconds = _best(lambda: session.run(None, {name: x}), repeats)
    return seconds, None, _relative_to_patched_caffe(session.run(None, {name: x})[0], weights, case)


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
    fn = {"opencv": run_opencv, "onnxruntime": run_onnxruntime}.get(backend, run_caffe)
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
        "onnxruntime": ("ONNX Runtime", caffe_env(patched)),
    }


def run_child(backend, env_add, case, weights, repeats):
    env = dict(os.environ, GLOG_minloglevel="2", BENCH_BACKEND=backend, **env_add)
    kind = backend if backend in ("opencv", "onnxruntime") else ("init" if case == "init" else "caffe")
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, case, str(weights),
                           str(repeats)], env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"bench_caffe_cpu: {backend} {case} failed:\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return None


def sgemm_rate(n=2048, repeats=10):
    a = np.random.default_rng(0).random((n, n), np.float32)
    b = a.T.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def conv_shape_rate(repeats=200):
    """numpy SGEMM at the shape of Caffe's per-image GEMM in DDSR-18 (M 64, K 576, N 441: a
    3x3x64 convolution on a 21x21 patch) on one core, times the cores: what the patched
    build's one-image-per-thread GEMMs can reach at most."""
    code = f"""
import time
import numpy as np
a, b = np.random.rand(64, 576).astype(np.float32), np.random.rand(576, 441).astype(np.float32)
a @ b
times = []
for _ in range({repeats}):
    t = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - t)
print(2 * 64 * 576 * 441 / min(times) / 1e9)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")).stdout
    return float(out) * os.cpu_count()


def goal_lines(rows, gemm):
    """The issue's goals, each with the measured figure and whether it is met."""
    by = {row[0:2]: row[2] for row in rows}
    rate = {row[0:2]: row[3] / row[2] / 1e9 for row in rows}
    patched, stock = "Caffe, patched (tools/caffe-patches)", "Caffe, unpatched"
    lines = []
    for case in ("train64", "train128"):
        if (case, patched) in by:
            ratio = rate[case, patched] / gemm
            speed = by[case, stock] / by[case, patched]
            lines.append(f"- {CASES[case][1]}: {ratio:.2f} of SGEMM (goal >= 0.55: "
                         f"{'met' if ratio >= 0.55 else 'not met'}), {speed:.1f}x the unpatched build "
                         f"(goal >= 2.5x: {'met' if speed >= 2.5 else 'not met'}).")
    same_kernels = [row[6].get("stock_avx512") for row in rows if row[1] == patched]
    same_kernels = [d for d in same_kernels if d]
    if same_kernels:
        out = max(d[0] for d in same_kernels)
        grad = max((d[1] for d in same_kernels if d[1] is not None), default=None)
        ok = out <= 1e-5 and (grad is None or grad <= 1e-4)
        lines.append(f"- Equal results, patched vs unpatched on the same OpenBLAS kernels: output {_rel(out)} "
                     f"(goal <= 1e-5), gradients {_rel(grad)} (goal <= 1e-4): {'met' if ok else 'not met'}.")
    for case in ("deploy170", "deploy_bsd"):
        if (case, patched) in by and (case, "OpenCV dnn") in by:
            vs_cv = by[case, "OpenCV dnn"] / by[case, patched]
            vs_ort = by[case, patched] / by[case, "ONNX Runtime"]
            lines.append(f"- {CASES[case][1]}: patched Caffe {vs_cv:.2f}x OpenCV dnn's speed (goal >= 1: "
                         f"{'met' if vs_cv >= 1 else 'not met'}); ONNX Runtime is {vs_ort:.2f}x faster than "
                         "patched Caffe.")
    return lines


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


EVAL_SETS = ("Set5", "Set14", "BSD200")


def time_evaluation(label, env_add, weights, data_root, out):
    """``tools/eval.py`` of DDSR-18 x3 (``weights``) on EVAL_SETS with one Caffe build:
    wall seconds, the net's mean forward ms per set, and the per-image PSNR (to compare builds)."""
    cmd = [sys.executable, str(REPO / "tools" / "eval.py"), "--model", str(DEPLOY_PROTOTXT),
           "--weights", str(weights), "--scale", "3", "--sets", *EVAL_SETS, "--data-root", str(data_root),
           "--no-images", "--no-baseline", "--quiet", "--name", "DDSR-18 random", "--paper-row", "none",
           "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=dict(os.environ, GLOG_minloglevel="2", **env_add),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_caffe_cpu: tools/eval.py with {label} failed:\n{proc.stderr[-3000:]}")
    from ddsr.csvfiles import read_csv

    run = json.loads((Path(out) / "run.json").read_text())
    psnr = {(r["set"], r["image"]): float(r["psnr"]) for r in read_csv(Path(out) / "per_image.csv")}
    return seconds, run["forward_ms_mean"], run["timings_s"], psnr


def evaluation_section(table, weights, data_root, tmp):
    """The before/after evaluation of Set5 + Set14 + BSD200 at x3, as Markdown."""
    results = {}
    for backend in ("stock", "patched"):
        label, env_add = table[backend]
        results[backend] = time_evaluation(label, env_add, weights, data_root, Path(tmp) / f"eval_{backend}")
        print(f"eval      {label:48s} {results[backend][0]:9.1f} s", flush=True)
    (s_wall, s_fwd, s_t, s_psnr), (p_wall, p_fwd, p_t, p_psnr) = results["stock"], results["patched"]
    if s_psnr.keys() != p_psnr.keys():
        sys.exit("bench_caffe_cpu: the two evaluations did not cover the same images")
    diff = max(abs(s_psnr[k] - p_psnr[k]) for k in s_psnr)
    lines = [
        "## DDSR-18 x3 evaluation of Set5 + Set14 + BSD200 on the CPU, before and after (`bench/bench_caffe_cpu.py --eval`)",
        "",
        f"`tools/eval.py --model prototxt/ddsr_x3_deploy.prototxt --weights W --scale 3 --sets "
        f"{' '.join(EVAL_SETS)} --no-images --no-baseline` ({len(s_psnr)} images; PSNR, SSIM and IFC; W: "
        "random DDSR-18 weights, since the time does not depend on them), run once with each build "
        "in the same session.",
        "",
        "| | unpatched | patched | speed-up |",
        "|---|---:|---:|---:|",
        f"| wall time, whole evaluation (s) | {s_wall:.0f} | {p_wall:.0f} | {s_wall / p_wall:.2f}x |",
    ]
    for set_name in EVAL_SETS:
        a, b = s_fwd[set_name]["x3"], p_fwd[set_name]["x3"]
        lines.append(f"| net forward per image, {set_name} (ms) | {a:.0f} | {b:.0f} | {a / b:.2f}x |")
    metric_s = {k: sum(t[m] for m in ("prepare", "psnr", "ssim", "ifc")) for k, t in (("s", s_t), ("p", p_t))}
    lines += [
        f"| reading and metrics (s; the same code in both) | {metric_s['s']:.0f} | {metric_s['p']:.0f} | |",
        "",
        f"Largest per-image PSNR difference between the two builds: {diff:.1e} dB.",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {benchtable.cpu_model()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
    ]
    return "\n".join(lines)


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
    p.add_argument("--eval", action="store_true", help="instead: time tools/eval.py of DDSR-18 x3 on "
                   f"{' + '.join(EVAL_SETS)} with each Caffe build (about 40 minutes on 2 cores)")
    p.add_argument("--data-root", type=Path, default=benchtable.default_data_root(),
                   help="folder holding the test sets, for --eval (default: %(default)s)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args()
    stock = args.stock or caffe_prefix(stock=True)
    patched = args.patched or caffe_prefix(stock=False)
    for prefix in (stock, patched):
        if not (prefix / ".ddsr-build-complete").is_file():
            sys.exit(f"bench_caffe_cpu: no finished Caffe build in {prefix} "
                     "(build it with tools/install_caffe.sh, --stock-cpu for the unpatched one)")
    for module, package in (("cv2", "'opencv-python-headless<5'"), ("onnxruntime", "onnxruntime"),
                            ("onnx", "onnx")):
        try:
            __import__(module)
        except ImportError:
            sys.exit(f"bench_caffe_cpu: {module} is missing: pip install {package} (see requirements.txt)")

    table = backends(stock, patched)
    if args.eval:
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "ddsr_x3_random.caffemodel"
            run_child("patched", table["patched"][1], "init", weights, 1)
            text = evaluation_section(table, weights, args.data_root, tmp)
        print(text)
        if not args.no_write:
            benchtable.write_section("bench_caffe_cpu_eval", text)
        return
    load_start = os.getloadavg()
    gemm = sgemm_rate()
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
                err = r[2] if len(r) > 2 else None
                diffs = {ref: builds_difference(weights, case, backend, ref) for ref in ("stock", "stock_avx512")
                         if ref != backend and backend not in ("stock", "opencv", "onnxruntime")}
                rows.append((case, label, seconds, flops, base, err, diffs))
                print(f"{case:10s} {label:48s} {seconds * 1e3:9.1f} ms", flush=True)
    gemm_after = sgemm_rate()
    gemm_best = max(gemm, gemm_after)
    conv_rate = conv_shape_rate()
    load_end = os.getloadavg()

    lines = [
        "## Caffe on the CPU: unpatched, patched, OpenCV dnn, ONNX Runtime (`bench/bench_caffe_cpu.py`)",
        "",
        f"One run, {args.repeats} timed repetitions per cell after a warm-up (best kept), each "
        "backend in a process of its own, same prototxt (`prototxt/ddsr_x3_*`, "
        "`prototxt/demo_x3_train.prototxt`) and the same random weights (Caffe's fillers). "
        "GFLOP/s counts the convolution and deconvolution multiply-adds (x2; backward: weight "
        "and bottom gradients). Reference (\"of SGEMM\"): numpy float32 SGEMM 2048^3 on all cores, "
        f"the better of {gemm:.0f} GFLOP/s before the run and {gemm_after:.0f} after.",
        "",
        "| work | backend | ms | GFLOP/s | of SGEMM | speed-up vs unpatched |",
        "|---|---|---:|---:|---:|---:|",
    ]
    short = {"stock": "unpatched", "stock_avx512": "unpatched + SkylakeX"}
    for case, label, seconds, flops, base, err, diffs in rows:
        rate = flops / seconds / 1e9 if flops else float("nan")
        speed = f"{base / seconds:.2f}x" if base else ""
        note = f" (max rel. diff to patched Caffe {err:.0e})" if err is not None else ""
        parts = [f"to {short[ref]}: output {_rel(d[0])}" + (f", gradients {_rel(d[1])}" if d[1] is not None else "")
                 for ref, d in diffs.items() if d]
        if parts:
            note = " (max rel. diff " + "; ".join(parts) + ")"
        lines.append(f"| {CASES[case][1]} | {label}{note} | {seconds * 1e3:.0f} | {rate:.0f} | "
                     f"{rate / gemm_best:.2f} | {speed} |")
    lines += ["", "Goals (issue 11):", ""] + goal_lines(rows, gemm_best) + [
        "",
        f"The ceiling for training: Caffe multiplies one image at a time, a 64 x 576 by 576 x 441 "
        f"GEMM per 3x3x64 layer on a 21x21 patch; numpy's SGEMM at that shape on one core, times "
        f"{os.cpu_count()} cores, gives {conv_rate:.0f} GFLOP/s ({conv_rate / gemm_best:.2f} of SGEMM), "
        "the most the patched build's one-image-per-thread GEMMs can reach before im2col, col2im "
        "and PReLU are counted.",
        "",
        f"Machine: {benchtable.cpu_model()}, {os.cpu_count()} cores; load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end (the machine is "
        f"shared: cells measured under load are slower). {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "Equality: \"max rel. diff\" is max |a - b| / max |b| over the output and over each "
        "parameter gradient (the largest), the same weights and inputs. Switching OpenBLAS's "
        "kernels alone (the unpatched build with `OPENBLAS_CORETYPE=SkylakeX`) moves the float32 "
        "gradients of a deep random net by a few 1e-4 (different summation order inside the "
        "GEMMs); the patched build differs from the unpatched one by the same amount, and from the "
        "unpatched one on the same kernels by what its own loops change.",
        "",
        "Builds: the same Debian source and options (`tools/install_caffe.sh`); the unpatched "
        "one without `tools/caffe-patches/*-cpu-speed-*` (`--stock-cpu`). Threads: OpenMP's "
        "default (all cores) for the patched build, OpenBLAS's default for the unpatched one, "
        "ONNX Runtime's and OpenCV's defaults.",
        "",
        "Why the unpatched build is slow, and what each patch does: the row with "
        "`OPENBLAS_CORETYPE=SkylakeX` separates the two causes. Debian's OpenBLAS 0.3.21 does not "
        "know this CPU model and falls back to its SSE3 \"Prescott\" kernels; patch 0005 makes "
        "libcaffe redo OpenBLAS's choice by instruction set (AVX-512 here). Caffe's convolution "
        "then multiplies one image at a time, with a serial im2col/col2im between small GEMMs that "
        "OpenBLAS splits over the threads; patch 0010 runs Convolution and Deconvolution over "
        "OpenMP threads instead (whole images per thread for a batch, gradients summed in thread "
        "order so that results do not depend on timing; for one large image, chunks of output rows "
        "with about 2 MB of column buffer each, so the 600 MB im2col buffer of a 510x510 output is "
        "never allocated), BLAS single-threaded inside. Patch 0011 spreads PReLU's loops over the "
        "threads (its backward was a quarter of an iteration once the convolutions were parallel).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        benchtable.write_section("bench_caffe_cpu", text)


if __name__ == "__main__":
    main()
