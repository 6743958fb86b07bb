#!/usr/bin/env python3
"""`make demo`: train a small DDSR on the CPU and report how it beats bicubic.

No download, no GPU: the default data are photographs bundled with scikit-image
(written as PNG set folders under data/demo/); --data DIR uses real sets instead
(train T91, test Set5). The steps, each a tool a user can run by hand:

  1. data       the demo sets under data/demo/ (or DIR)
  2. database   tools/make_h5.py --scale 3 ... --out data/demo/h5
  3. train      caffe train -solver solvers/demo_x3.prototxt  (tools/train.py demo_x3)
  4. evaluate   tools/eval.py --model prototxt/demo_x3_deploy.prototxt --weights ... vs bicubic
  5. curves     every snapshot's PSNR on the test images, and the loss from the log
  6. compare    crops of bicubic / demo net / ground truth

and a report folder (default reports/demo/): README.md (the result, times, figures),
table3.md (tools/eval.py's Table 3 layout), comparison.png, curves.png, CSVs and demo.json.
An interrupted demo resumes its training from the newest snapshot when run again.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr import paths
from ddsr.evaluation import compare
from ddsr.training import curves, log as train_log, runner, snapshots
from ddsr.workflows import demo, reproduce
from ddsr.atomic import write_json_atomic, write_text_atomic

PROG = "demo"
REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "demo_x3"
SCALE = 3
DEMO_ROOT = Path("data") / "demo"
H5_OUT = DEMO_ROOT / "h5"  # the demo_x3 train net reads data/demo/h5/{train,val}.txt
# Evaluate on 64x64 LR tiles: the same numbers, 0.7 GB instead of 4 GB at the peak (Caffe keeps
# an im2col buffer of 9 x 24 x the output's pixels per conv layer: 0.3 GB each for 500x741).
TILE = 64


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].strip(),
        epilog=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="folder holding T91, Set5 and BSD200-train or General-100 (e.g. "
                             "../shared/datasets); default: the images bundled with scikit-image")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "demo",
                        help="report folder (default: reports/demo)")
    parser.add_argument("--gpu", type=int, default=None, metavar="N",
                        help="train and evaluate on GPU N (a CUDA build); default: the CPU")
    parser.add_argument("--restart", action="store_true",
                        help="train from iteration 0 (delete the demo's snapshots) instead of resuming")
    parser.add_argument("--min-gain", type=float, default=0.5, metavar="DB",
                        help="exit with status 1 unless the net beats bicubic by this many dB "
                             "(default: 0.5)")
    parser.add_argument("--nice", type=int, default=0, metavar="N", help="nice increment for Caffe")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def say(message):
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def run_tool(args, quiet):
    return reproduce.run_tool(args, REPO_ROOT, quiet, PROG)


def clear_run(info):
    """Remove the demo run's snapshots and log (its own files), so it trains from iteration 0."""
    for snap in snapshots.list_snapshots(info.snapshot_prefix, REPO_ROOT):
        for path in (snap.caffemodel, snap.solverstate):
            if path is not None:
                path.unlink()
    log = REPO_ROOT / "runs" / EXPERIMENT / "train.log"
    if log.exists():
        log.unlink()


def describe_net(deploy):
    """One line about the demo net, from its deploy prototxt."""
    from ddsr.evaluation.deploy_net import parse_deploy

    net = parse_deploy(deploy)
    convs = [l for l in net.layer if l.type == "Convolution"]
    deconv = [l for l in net.layer if l.type == "Deconvolution"]
    residual = any(l.type == "Eltwise" for l in net.layer)
    parts = []
    if deconv:
        p = deconv[0].convolution_param
        parts.append(f"{p.kernel_size[0]}x{p.kernel_size[0]}x{p.num_output} deconvolution (stride {p.stride[0]})")
    if convs:
        width = convs[0].convolution_param.num_output
        parts.append(f"{len(convs) - 1} conv 3x3x{width} + the 3x3x1 reconstruction (depth {len(convs)})")
    parts.append("with the residual" if residual else "no residual")
    return ", ".join(parts) + ", PReLU"


def machine_line(load_at_start):
    cpus = os.cpu_count()
    return (f"{platform.processor() or platform.machine()}, {cpus} CPU cores; load average "
            f"{load_at_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")


def main(argv=None):
    args = parse_args(argv)
    begun = time.time()
    load_at_start = os.getloadavg()
    seconds = {}
    quiet = args.quiet
    commands = []

    # 1. data
    step = time.time()
    if args.data is not None:
        data_root = args.data.resolve()
        sets = demo.real_sets(data_root)
        val_images = 2
        data_line = (f"real sets under {args.data}: train {sets['train']}, validation the first "
                     f"{val_images} images of {sets['val']}, test {sets['test']}")
    else:
        say(f"[1/6] data: images bundled with scikit-image -> {DEMO_ROOT}/")
        written = demo.write_demo_sets(REPO_ROOT / DEMO_ROOT)
        data_root = REPO_ROOT / DEMO_ROOT
        sets = dict(demo.SKIMAGE_SETS)
        val_images = len(demo.DEMO_SETS[sets["val"]])
        data_line = ("photographs bundled with scikit-image: train "
                     + ", ".join(p.stem for p in written[sets["train"]])
                     + f"; validation {', '.join(p.stem for p in written[sets['val']])}"
                     + f"; test {', '.join(p.stem for p in written[sets['test']])}")
    say(f"[1/6] data: {data_line}")
    seconds["data"] = time.time() - step

    # 2. database
    step = time.time()
    say("[2/6] database: x3 LR/HR patch pairs for Caffe's HDF5Data layer")
    data_arg = paths.relative_path(data_root, REPO_ROOT)
    commands.append(run_tool(["tools/make_h5.py", "--scale", SCALE, "--data-root", data_arg,
                              "--train-sets", sets["train"], "--val-set", sets["val"],
                              "--val-images", val_images, "--out", H5_OUT], quiet))
    seconds["database"] = time.time() - step

    # 3. train
    step = time.time()
    solver = Path("solvers") / f"{EXPERIMENT}.prototxt"
    deploy = Path("prototxt") / f"{EXPERIMENT}_deploy.prototxt"
    if not (REPO_ROOT / solver).is_file():
        raise RuntimeError(f"no {solver}: generate the nets with `make nets`")
    info = snapshots.read_solver(REPO_ROOT / solver)
    stamp_path = REPO_ROOT / "runs" / EXPERIMENT / "demo-data.json"
    stamp = {"data_root": str(data_root), **sets}
    previous = json.loads(stamp_path.read_text()) if stamp_path.is_file() else None
    if args.restart or (previous is not None and previous != stamp):
        if not args.restart:
            say("[3/6] train: the data changed since the last demo run; training from iteration 0")
        clear_run(info)
    write_json_atomic(stamp_path, stamp)
    plain = " ".join(map(str, runner.train_command(solver, gpu=args.gpu)))
    say(f"[3/6] train: {plain}  ({info.max_iter} iterations; log runs/{EXPERIMENT}/train.log)")
    commands.append(plain)
    result = runner.train(solver, gpu=args.gpu, workdir=REPO_ROOT, progress=not quiet,
                                niceness=args.nice, description=f"train {EXPERIMENT}")
    if result.already_done:
        say(f"[3/6] train: already trained to iteration {result.final_iteration} (--restart to train again)")
    seconds["train"] = time.time() - step
    log = train_log.read_log(result.log_path)
    weights = paths.relative_path(result.snapshot.caffemodel, REPO_ROOT)
    iterations = result.snapshot.iteration
    seconds_per_iteration = result.seconds_per_iteration

    # 4. evaluate
    step = time.time()
    out = args.out.resolve()
    eval_dir = out / "eval"
    say("[4/6] evaluate: the demo net and bicubic on the test images")
    eval_args = ["tools/eval.py", "--model", deploy, "--weights", weights, "--scale", SCALE,
                 "--sets", sets["test"], "--data-root", data_arg, "--out",
                 paths.relative_path(eval_dir, REPO_ROOT), "--name", f"DDSR demo ({EXPERIMENT})",
                 "--paper-row", "none", "--tile", TILE]
    if args.gpu is not None:
        eval_args += ["--gpu", args.gpu]
    commands.append(run_tool(eval_args, quiet))
    model = json.loads((eval_dir / "summary.json").read_text())[sets["test"]][f"x{SCALE}"]
    bicubic = json.loads((eval_dir / "bicubic" / "summary.json").read_text())[sets["test"]][f"x{SCALE}"]
    model_images = demo.per_image_psnr(eval_dir / "per_image.csv")
    bicubic_images = demo.per_image_psnr(eval_dir / "bicubic" / "per_image.csv")
    seconds["evaluate"] = time.time() - step

    # 5. curves
    step = time.time()
    say("[5/6] curves: PSNR of every snapshot on the test images, loss from the log")
    quality = curves.evaluate_snapshots(REPO_ROOT / deploy, info.snapshot_prefix, data_root, sets["test"],
                                        SCALE, workdir=REPO_ROOT, progress=not quiet, tile=TILE)
    loss = curves.log_rows(log)
    curves.write_csv(out / "loss.csv", loss, curves.LOSS_COLUMNS)
    curves.write_csv(out / "quality.csv", quality, curves.QUALITY_COLUMNS)
    curves.plot_summary(loss, quality, out / "curves.png", set_name=sets["test"], scale=SCALE,
                        baseline=bicubic, title=f"{EXPERIMENT}: training loss and test PSNR")
    commands.append(f"tools/curves.py {EXPERIMENT} --set {sets['test']} --data-root {data_arg} --tile {TILE}")
    seconds["curves"] = time.time() - step

    # 6. comparison
    step = time.time()
    say("[6/6] compare: crops of bicubic / demo net / ground truth")
    from ddsr.evaluation.upscaler import CaffeUpscaler
    from ddsr.evaluation.deploy_net import load_net, resolve_settings

    settings, _ = resolve_settings(REPO_ROOT / deploy, SCALE, tile=TILE)
    net, net_param = load_net(REPO_ROOT / deploy, REPO_ROOT / weights)
    upscaler = CaffeUpscaler(net, SCALE, settings, net_param=net_param)
    images = [compare.find_image(data_root, f"{sets['test']}/{name}") for name in sorted(model_images)]
    entries = [compare.comparison_entry(path, SCALE, [(f"{EXPERIMENT}", upscaler)]) for path in images]
    rows = compare.plot_comparison(entries, out / "comparison.png", crop_size=96,
                                   title=f"x{SCALE}: bicubic / {EXPERIMENT} ({iterations} it) / ground truth")
    curves.write_csv(out / "comparison.csv", rows, ("image", "method", "psnr", "crop_top", "crop_left", "crop_size"))
    commands.append(f"tools/compare.py --experiment {EXPERIMENT} --data-root {data_arg} --tile {TILE} --images "
                    + " ".join(f"{sets['test']}/{p.stem}" for p in images))
    seconds["compare"] = time.time() - step

    # report
    gain = model["psnr"] - bicubic["psnr"]
    facts = {
        "experiment": EXPERIMENT, "net": describe_net(REPO_ROOT / deploy), "data": data_line,
        "test_set": sets["test"], "scale": SCALE, "iterations": iterations,
        "model": model, "bicubic": bicubic,
        "per_image": {name: (bicubic_images[name], model_images[name]) for name in sorted(model_images)},
        "min_gain": args.min_gain, "seconds": seconds, "seconds_per_iteration": seconds_per_iteration,
        "machine": machine_line(load_at_start),
        "table3": (eval_dir / "table3.md").read_text(),
        "commands": commands,
        "figures": {"Bicubic / demo net / ground truth": "comparison.png",
                    "Training loss and test PSNR": "curves.png"},
    }
    write_text_atomic(out / "table3.md", facts["table3"])
    write_text_atomic(out / "README.md", demo.report_markdown(facts))
    write_json_atomic(out / "demo.json", {
        "experiment": EXPERIMENT, "iterations": iterations, "test_set": sets["test"], "scale": SCALE,
        "psnr": model["psnr"], "bicubic_psnr": bicubic["psnr"], "gain_db": gain, "ssim": model["ssim"],
        "bicubic_ssim": bicubic["ssim"], "seconds": seconds, "total_seconds": time.time() - begun,
        "seconds_per_iteration": seconds_per_iteration, "machine": facts["machine"], "data": data_line,
    })
    say(f"done in {(time.time() - begun) / 60:.1f} min: {sets['test']} x{SCALE} PSNR {model['psnr']:.2f} dB "
        f"vs bicubic {bicubic['psnr']:.2f} dB ({gain:+.2f} dB)")
    print(f"report: {paths.relative_path(out / 'README.md', REPO_ROOT)}")
    if gain < args.min_gain:
        say(f"error: the demo net beats bicubic by {gain:+.2f} dB, less than the {args.min_gain} dB it should")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(runner.exit_status(PROG, main))
