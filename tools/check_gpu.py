#!/usr/bin/env python3
"""GPU self-check of the CUDA build of Caffe: parity with the CPU, speed, a Markdown report.

    tools/check_gpu.py [--out reports/gpu]        # make check-gpu

On a machine with an NVIDIA GPU and the CUDA build (`make setup CUDA=1`): runs
`caffe device_query`; compares the ddsr_x3 train net's output and its first 100 training
losses on the CPU and on the GPU, with the cuDNN engine and with Caffe's own, from the
same weights and data (forward: max abs difference <= 1e-5 on inputs in [0, 1]; training:
every loss within 1e-3 relative); times it with `caffe time` at batch 128 for each engine
(and cuDNN with TF32 allowed); runs `caffe train -gpu all` when there are several GPUs.
Writes OUT/report.md (GPU, driver, CUDA and cuDNN versions, every figure) and OUT/work/
(the nets, data and Caffe logs). The logic is in ddsr.training.gpu_check.
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr.training import runner  # noqa: E402
from ddsr.training import gpu_check, gpu_facts

PROG = "check_gpu"
REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].strip(),
        epilog=("Exit status: 0 every check passed, 1 a check failed or could not run, 2 no NVIDIA "
                "GPU on this machine (said in one line; nothing is run or written). "
                "CAFFE_CUDNN_ALLOW_TF32=1 checks cuDNN with TF32 allowed instead of FP32."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "gpu",
                        help="folder for report.md and work/ (default: reports/gpu)")
    parser.add_argument("--caffe", default=None,
                        help="the caffe tool of the CUDA build (default: the venv's, else PATH's)")
    parser.add_argument("--net", type=Path, default=REPO_ROOT / "prototxt" / "ddsr_x3_train.prototxt",
                        help="train net to check (default: prototxt/ddsr_x3_train.prototxt)")
    parser.add_argument("--solver", type=Path, default=REPO_ROOT / "solvers" / "ddsr_x3.prototxt",
                        help="its solver, for the optimiser settings (default: solvers/ddsr_x3.prototxt)")
    parser.add_argument("--gpu", type=int, default=0, metavar="N", help="GPU to check (default: 0)")
    parser.add_argument("--train-iterations", type=int, default=gpu_check.TRAIN_ITERATIONS, metavar="N",
                        help="training-parity iterations (default: %(default)s)")
    parser.add_argument("--train-batch", type=int, default=32, metavar="N",
                        help="training-parity batch size; the CPU reference trains too (default: 32)")
    parser.add_argument("--time-iterations", type=int, default=50, metavar="N",
                        help="caffe time -iterations (default: 50)")
    parser.add_argument("--cpu", action="store_true",
                        help="run the GPU side in CPU mode too: a dry run of the check itself on a "
                             "machine without a GPU (its figures say nothing about a GPU)")
    args = parser.parse_args(argv)
    for name in ("train_iterations", "train_batch", "time_iterations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    gpus = []
    if not args.cpu:
        try:
            gpus = gpu_facts.find_gpus()
        except gpu_facts.NoGPU as exc:
            print(f"{PROG}: no NVIDIA GPU on this machine ({exc}); nothing to check", file=sys.stderr)
            return 2
        if args.gpu not in [g.index for g in gpus]:
            print(f"{PROG}: no GPU {args.gpu}; this machine has " +
                  ", ".join(f"{g.index}: {g.name}" for g in gpus), file=sys.stderr)
            return 1
    for path in (args.net, args.solver):
        if not path.is_file():
            print(f"{PROG}: {path} not found", file=sys.stderr)
            return 1
    try:
        caffe = args.caffe or runner.find_caffe_tool()
    except FileNotFoundError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if not args.cpu and gpu_facts.library_versions(caffe)["cudart"][0] is None:
        print(f"{PROG}: {caffe} is a CPU-only build of Caffe (it loads no libcudart): "
              "run `make setup CUDA=1`", file=sys.stderr)
        return 1

    def say(line):
        print(f"{PROG}: {line}", file=sys.stderr, flush=True)

    results = gpu_check.run_check(
        caffe, args.net, args.solver, args.out / "work", gpu=None if args.cpu else args.gpu, gpus=gpus,
        engines=("CAFFE",) if args.cpu else gpu_check.ENGINES,
        train_iterations=args.train_iterations, train_batch=args.train_batch,
        time_iterations=args.time_iterations, say=say)
    report = gpu_facts.write_report(args.out / "report.md", results)
    for engine, label, c in results.forward:
        say(f"forward, {engine}, {label}: max abs difference {c.value:.3g} "
            f"(<= {c.tolerance:g}) {'PASS' if c.passed else 'FAIL'}")
    for engine, c, _, _ in results.training:
        say(f"training, {engine}: max relative loss difference {c.value:.3g} "
            f"(<= {c.tolerance:g}) {'PASS' if c.passed else 'FAIL'}")
    for label, t in results.timings:
        say(f"caffe time, {label}: {t.forward_backward_ms:.2f} ms per iteration "
            f"({gpu_facts.hours_for(t.forward_backward_ms):.2f} h per 100k)")
    for failure in results.failures:
        say(f"FAILED {failure}")
    say(f"{'passed' if results.passed else 'FAILED'}; report: {report}")
    return 0 if results.passed else 1


if __name__ == "__main__":
    sys.exit(main())
