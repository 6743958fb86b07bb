#!/usr/bin/env python3
"""`make reproduce` / `make reproduce-ablations`: the paper's protocol, end to end.

  1. datasets   tools/fetch_datasets.py (or --data DIR holding the set folders)
  2. database   tools/make_h5.py --scale S  -> data/h5/xS/ (kept if already built)
  3. train      caffe train -solver solvers/NAME.prototxt -gpu 0  (resumes from the newest snapshot)
  4. evaluate   tools/eval.py on Set5, Set14 and BSD200 -> OUT/NAME/
  5. tables     OUT/table3.md (Table 3 rows); with --ablations OUT/table1.md, OUT/table2.md
                and OUT/fig5/ (Set5 PSNR against iteration: Adam/SGD, with/without residual)

Training needs a CUDA build of Caffe: each experiment is 100,000 iterations (about 3 hours on
the paper's GTX 1080 Ti). On a CPU-only Caffe the tool refuses with the expected run time
unless --force. Interrupted training resumes from its newest snapshot when run again.
"""

import argparse
import sys
import time
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr import paths
from ddsr.training import runner
from ddsr.workflows import reproduce
from ddsr.atomic import write_text_atomic
from ddsr.model.experiments import load_experiments
from ddsr.evaluation.report import combine_rows, load_run, table3_markdown

PROG = "reproduce"
REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].strip(),
        epilog=__doc__.split("\n\n", 1)[1].rstrip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, nargs="+", default=None, metavar="S",
                        help="Table 3 scales to train and evaluate (default: 2 3 4, or none with --ablations)")
    parser.add_argument("--ablations", action="store_true",
                        help="also train and evaluate Table 1, Table 2 and Fig. 5 (all x3)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="folder holding the set folders (no download); default: fetch into data/")
    parser.add_argument("--gpu", type=int, default=0, metavar="N", help="GPU to train on (default: 0)")
    parser.add_argument("--force", action="store_true",
                        help="train on the CPU when Caffe has no GPU (days per experiment)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "reproduce",
                        help="report folder (default: reports/reproduce)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (experiments, commands, expected time) and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def say(message):
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def run_tool(args, quiet):
    return reproduce.run_tool(args, REPO_ROOT, quiet, PROG)


def main(argv=None):
    args = parse_args(argv)
    experiments = load_experiments(REPO_ROOT / "experiments.yaml")
    if args.scale is None:
        args.scale = [] if args.ablations else [2, 3, 4]
    names = reproduce.experiments_for(args.scale, args.ablations)
    if not names:
        raise ValueError("nothing to do: give --scale S and/or --ablations")
    missing = [n for n in names if n not in experiments]
    if missing:
        raise ValueError(f"experiments.yaml has no {', '.join(missing)}")
    scales = sorted({experiments[n].scale for n in names})

    # Where to train: the GPU if this Caffe can use it, else the CPU only when forced.
    cpu_seconds = sum(reproduce.experiment_cpu_seconds(experiments[n]) for n in names)
    gpu = args.gpu
    if not runner.gpu_available(gpu=gpu):
        plan = (f"{len(names)} experiment(s) ({', '.join(names)}), "
                f"{sum(int(experiments[n].solver['max_iter']) for n in names):,} iterations")
        estimate = (f"about {reproduce.format_duration(cpu_seconds)} on a CPU like this project's 2-core "
                    f"machine ({reproduce.CPU_REFERENCE_SECONDS} s per iteration of DDSR-18 at batch 64, "
                    f"scaled by multiply-adds)")
        if not (args.force or args.dry_run):
            raise RuntimeError(
                f"this Caffe cannot use GPU {gpu} (`caffe device_query -gpu {gpu}` fails: a CPU-only build?). "
                f"Training {plan} on the CPU would take {estimate}. Build Caffe with CUDA "
                f"(`make setup CUDA=1`) and run on a GPU, or add FORCE=1 (--force) to train on the CPU anyway.")
        say(f"no usable GPU {gpu}: training on the CPU, {estimate}")
        gpu = None
    data_root = args.data.resolve() if args.data else REPO_ROOT / "data"
    data_arg = paths.relative_path(data_root, REPO_ROOT)
    if args.dry_run:
        say(f"plan: {', '.join(names)} on {'GPU %d' % gpu if gpu is not None else 'the CPU'}; data {data_arg}")
        for name in names:
            say("  " + " ".join(runner.train_command(experiments[name].solver_path, gpu=gpu)))
        return 0

    begun = time.time()
    # 1. datasets
    if args.data:
        absent = [s for s in reproduce.DATA_SETS if not (data_root / s).is_dir()]
        if absent:
            raise ValueError(f"--data {args.data} lacks {', '.join(absent)}")
    else:
        run_tool(["tools/fetch_datasets.py", *reproduce.DATA_SETS], args.quiet)

    # 2. databases
    for scale in scales:
        out = REPO_ROOT / "data" / "h5" / f"x{scale}"
        if (out / "manifest.json").is_file():
            say(f"database x{scale}: {paths.relative_path(out, REPO_ROOT)} exists, kept "
                f"(delete it to rebuild)")
            continue
        run_tool(["tools/make_h5.py", "--scale", scale, "--data-root", data_arg], args.quiet)

    # 3-4. train and evaluate each experiment
    for index, name in enumerate(names, start=1):
        experiment = experiments[name]
        say(f"[{index}/{len(names)}] {name}: {experiment.description}")
        say("  $ " + " ".join(runner.train_command(experiment.solver_path, gpu=gpu)))
        result = runner.train(experiment.solver_path, gpu=gpu, workdir=REPO_ROOT,
                                    progress=not args.quiet, description=name)
        weights = paths.relative_path(result.snapshot.caffemodel, REPO_ROOT)
        eval_out = paths.relative_path(args.out.resolve() / name, REPO_ROOT)
        eval_args = ["tools/eval.py", "--model", experiment.deploy_net_path, "--weights", weights,
                     "--scale", experiment.scale, "--sets", *reproduce.TEST_SETS, "--data-root", data_arg,
                     "--out", eval_out, "--name", "DDSR" if name in reproduce.TABLE3_EXPERIMENTS.values()
                     else name, "--no-images"]
        if gpu is not None:
            eval_args += ["--gpu", gpu]
        run_tool(eval_args, args.quiet)

    # 5. tables
    out = args.out.resolve()
    written = []
    table3 = [n for n in names if n in reproduce.TABLE3_EXPERIMENTS.values()]
    if table3:
        rows = []
        for name in table3:
            rows += load_run(out / name)
        write_text_atomic(out / "table3.md", table3_markdown(combine_rows(rows), title="## Table 3 (this run)"))
        written.append(out / "table3.md")
    if args.ablations:
        for table in ("table1", "table2"):
            results = {label: reproduce.read_eval_folder(out / name)
                       for name, label in reproduce.ABLATIONS[table].items()}
            write_text_atomic(out / f"{table}.md", reproduce.ablation_markdown(table, results))
            written.append(out / f"{table}.md")
        fig5 = reproduce.ABLATIONS["fig5"]
        run_tool(["tools/curves.py", *fig5, "--labels", *fig5.values(), "--set", "Set5",
                  "--data-root", data_arg, "--out", paths.relative_path(out / "fig5", REPO_ROOT)],
                 args.quiet)
        written.append(out / "fig5")
    say(f"done in {(time.time() - begun) / 3600:.1f} h")
    for path in written:
        print(f"{PROG}: wrote {paths.relative_path(path, REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(runner.exit_status(PROG, main))
