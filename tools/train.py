#!/usr/bin/env python3
"""Train one experiment with `caffe train`, with progress, resuming and a NaN watch.

    tools/train.py ddsr_x3 [--gpu 0]

is `caffe train -solver solvers/ddsr_x3.prototxt [-gpu 0]` run from the repository
root, plus: a progress bar (iteration, loss, learning rate, ETA), the whole Caffe
output in runs/ddsr_x3/train.log, resuming from the newest
snapshots/ddsr_x3_iter_N.solverstate (`-snapshot`), and a stop with a message naming
the iteration and the last good snapshot if the loss becomes NaN or infinite.
Before Caffe starts, the experiment's training database is checked against its net
(scale, patch size, the test pass). The logic is in ddsr.training.runner.
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr.model import experiments  # noqa: E402
from ddsr.paths import REPO_ROOT, relative_path, train_log_path  # noqa: E402
from ddsr.training import runner, snapshots  # noqa: E402
from ddsr.cli import exit_status  # noqa: E402

PROG = "train"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0].strip(),
        epilog=("An interrupted run (Ctrl-C: Caffe saves a snapshot first) continues from its "
                "newest snapshot when the same command is run again; --restart starts over. "
                "Exit status: 0 done, 1 error, 2 bad arguments, 3 diverged (NaN/inf loss), "
                "130 interrupted."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment",
                        help="experiment name (solvers/NAME.prototxt) or a solver prototxt path")
    parser.add_argument("--gpu", type=int, default=None, metavar="N",
                        help="train on GPU N (a CUDA build of Caffe); default: the CPU")
    parser.add_argument("--restart", action="store_true",
                        help="delete this run's snapshots and log and start from iteration 0")
    parser.add_argument("--log", type=Path, default=None,
                        help="log file (default: runs/NAME/train.log)")
    parser.add_argument("--nice", type=int, default=0, metavar="N",
                        help="run Caffe with this nice increment (a shared CPU)")
    parser.add_argument("--verbose", action="store_true", help="also print Caffe's output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def resolve(name):
    """The solver (relative to the repository root) and the experiment it belongs to, or None.

    An experiment name of experiments.yaml gives its generated solver; a solver prototxt path is
    used as given (and is that experiment's when it is the experiment's own solver file).
    """
    try:
        known = experiments.load_experiments(experiments.EXPERIMENTS_PATH)
    except ValueError:
        known = {}  # a broken experiments.yaml does not keep a solver file from training
    given = Path(name)
    if given.suffix == ".prototxt":
        path = given if given.is_absolute() else (Path.cwd() / given)
        if not path.is_file():
            raise ValueError(f"no solver {name}")
        solver = relative_path(path, REPO_ROOT)
        match = [e for e in known.values() if Path(e.solver_path) == solver]
        return solver, (match[0] if match else None)
    if name in known:
        return Path(known[name].solver_path), known[name]
    path = Path("solvers") / f"{name}.prototxt"
    if not (REPO_ROOT / path).is_file():
        names = sorted(known) or sorted(p.stem for p in (REPO_ROOT / "solvers").glob("*.prototxt"))
        raise ValueError(f"unknown experiment {name!r}: no {path} (known: {', '.join(names) or 'none'}; "
                         f"`make nets` writes them from experiments.yaml)")
    return path, None


def main(argv=None):
    args = parse_args(argv)
    solver, experiment = resolve(args.experiment)
    log_path = args.log or train_log_path(solver.stem)
    if experiment is not None:
        experiment.check_database()
    info = snapshots.read_solver(REPO_ROOT / solver)
    if args.restart:
        removed = snapshots.remove_snapshots(info.snapshot_prefix, REPO_ROOT)
        if log_path.exists():
            log_path.unlink()
        print(f"{PROG}: --restart: removed {removed} snapshot files and the log", file=sys.stderr)
    start = snapshots.newest_snapshot(info.snapshot_prefix, REPO_ROOT)
    plain = runner.train_command(
        solver, gpu=args.gpu, snapshot=relative_path(start.solverstate, REPO_ROOT) if start else None)
    print(f"{PROG}: the plain Caffe command (from {REPO_ROOT}): {' '.join(map(str, plain))}", file=sys.stderr)
    if start is not None and start.iteration < info.max_iter:
        print(f"{PROG}: resuming from iteration {start.iteration} of {info.max_iter}", file=sys.stderr)
    print(f"{PROG}: log: {log_path}", file=sys.stderr)
    result = runner.train(solver, gpu=args.gpu, log_path=log_path, workdir=REPO_ROOT,
                          progress=not args.quiet, niceness=args.nice,
                          stream=sys.stderr if args.verbose else None)
    if result.already_done:
        print(f"{PROG}: {solver.stem} is already trained to iteration {result.final_iteration} "
              f"({relative_path(result.snapshot.caffemodel, REPO_ROOT)}); --restart to train again")
        return 0
    print(f"{PROG}: {solver.stem}: iterations {result.start_iteration}-{result.final_iteration} in "
          f"{result.seconds / 60:.1f} min; weights {relative_path(result.snapshot.caffemodel, REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(PROG, main))
