"""Running ``caffe train`` and reading its log.

The one place that knows how BVLC Caffe's ``caffe`` tool is driven and what its
glog output looks like. Training is the plain command a reader could type::

    caffe train -solver solvers/ddsr_x3.prototxt [-gpu 0] [-snapshot snapshots/ddsr_x3_iter_N.solverstate]

run from the repository root (the solvers' paths are relative to it), with its
output parsed line by line for a progress bar, written unchanged to a log file,
and watched for a loss that is no longer finite.

Its log is read by :mod:`ddsr.training.log`; snapshots and solvers by
:mod:`ddsr.training.snapshots`. Caffe's SIGINT effect ("stop") writes a snapshot at the
current iteration before it exits, so an interrupted run loses nothing; SIGTERM ends it at
once without a snapshot, which is what a diverged run needs.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..paths import relative_path, train_log_path
from .log import TrainingLog, read_log
from .snapshots import Snapshot, last_good_snapshot, newest_snapshot, quarantine_after, read_solver

# --- the caffe tool -----------------------------------------------------------


def find_caffe_tool():
    """The ``caffe`` command: the one beside this Python (the venv's), else the first on PATH.

    Raises
    ------
    FileNotFoundError
        If there is none (Caffe is not installed: ``make setup``).
    """
    beside = Path(sys.executable).parent / "caffe"
    if beside.exists():
        return str(beside)
    found = shutil.which("caffe")
    if found is None:
        raise FileNotFoundError("the caffe tool was not found (run `make setup`, or put caffe on PATH)")
    return found


def gpu_available(caffe=None, gpu=0, timeout=60):
    """True if ``caffe device_query -gpu N`` succeeds, i.e. this Caffe has CUDA and sees that GPU.

    A CPU-only Caffe aborts on any GPU request (``Cannot use GPU in CPU-only
    Caffe``); the query runs in a subprocess so that abort cannot hit us.
    """
    caffe = caffe or find_caffe_tool()
    env = dict(os.environ, GLOG_logtostderr="1")
    try:
        done = subprocess.run(
            [caffe, "device_query", "-gpu", str(gpu)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def train_command(solver, gpu=None, snapshot=None, caffe="caffe"):
    """The ``caffe train`` command line, as a list of arguments.

    Parameters
    ----------
    solver : str or Path
        Solver prototxt, relative to the working directory (repository root).
    gpu : int or None
        GPU id for ``-gpu``; None trains on the CPU.
    snapshot : str, Path or None
        A ``.solverstate`` to resume from (``-snapshot``).
    caffe : str
        The caffe tool.
    """
    command = [str(caffe), "train", "-solver", str(solver)]
    if gpu is not None:
        command += ["-gpu", str(int(gpu))]
    if snapshot is not None:
        command += ["-snapshot", str(snapshot)]
    return command


class TrainingError(RuntimeError):
    """``caffe train`` failed; the message says why and where the log is."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite; the run was stopped.

    Attributes
    ----------
    iteration : int
        The iteration whose loss (or test output) was not finite.
    last_good : Snapshot or None
        The newest snapshot taken before it with finite weights.
    """

    exit_status = 3  # the status the training tools document for a diverged run

    def __init__(self, message, iteration, last_good):
        super().__init__(message)
        self.iteration = iteration
        self.last_good = last_good


class TrainingInterrupted(TrainingError):
    """Training was interrupted (Ctrl-C); Caffe snapshotted where it stopped."""

    exit_status = 130


@dataclass
class TrainingResult:
    """The outcome of :func:`train`."""

    command: list
    log_path: Path
    start_iteration: int
    final_iteration: int
    snapshot: Snapshot
    log: TrainingLog
    seconds: float
    already_done: bool = False
    seconds_per_iteration: float = None  # between the first and last displayed iterations (no start-up)


def _stop_with_parent():
    """In the Caffe child: get SIGINT if our process dies (Linux ``PR_SET_PDEATHSIG``).

    Without it a killed runner would leave Caffe training on, unwatched; SIGINT
    makes Caffe snapshot and stop, so the run can be resumed. SIGPIPE is ignored
    so that Caffe's logging to the dead runner's pipe cannot kill it before the
    snapshot is written.
    """
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGINT)
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


def _progress_fields(log):
    """The newest loss, lr and test outputs, for the progress bar."""
    fields = {}
    if log.loss:
        fields["loss"] = f"{log.loss[max(log.loss)]:.4g}"
    if log.lr:
        fields["lr"] = f"{log.lr[max(log.lr)]:.0e}"
    for test_name, table in sorted(log.test.items()):
        if table:
            fields["test_" + test_name] = f"{table[max(table)]:.4g}"
    return fields


def train(solver, *, gpu=None, resume=True, log_path=None, workdir=".", caffe=None,
          progress=True, niceness=0, description=None, stream=None):
    """Run ``caffe train`` with progress, resuming and a watch on the loss.

    Parameters
    ----------
    solver : str or Path
        The solver prototxt, relative to ``workdir`` (or absolute).
    gpu : int or None
        ``-gpu N``; None trains on the CPU.
    resume : bool
        Continue from the newest ``<snapshot_prefix>_iter_N.solverstate`` if
        there is one (``-snapshot``). If it is already at ``max_iter``, nothing
        runs and the result says ``already_done``.
    log_path : str, Path or None
        Caffe's whole output is appended to this file (default
        ``runs/<solver name>/train.log`` under ``workdir``, :func:`ddsr.paths.train_log_path`).
    workdir : str or Path
        Where ``caffe`` runs: the repository root, since solver and net paths
        are relative to it.
    caffe : str or None
        The caffe tool (default :func:`find_caffe_tool`).
    progress : bool
        Show a tqdm bar (iterations, loss, lr, ETA) on stderr.
    niceness : int
        ``nice`` increment for the Caffe process (the CPU may be shared).
    description : str or None
        Label of the progress bar (default: the solver's file stem).
    stream : file or None
        Also echo Caffe's output lines here (e.g. ``sys.stderr`` for ``--verbose``).

    Returns
    -------
    TrainingResult

    Raises
    ------
    TrainingDiverged
        A loss or test output became NaN or infinite. Caffe is stopped at once
        (SIGTERM, no snapshot of the broken weights); snapshots after the last
        good one are renamed ``*.diverged``.
    TrainingInterrupted
        Ctrl-C: Caffe saves a snapshot at its current iteration first.
    TrainingError
        Caffe exited with an error (its FATAL message is in the exception).
    """
    workdir = Path(workdir)
    solver_path = Path(solver)
    info = read_solver(solver_path if solver_path.is_absolute() else workdir / solver_path)
    name = solver_path.stem
    if not info.snapshot_prefix:
        raise ValueError(f"{solver}: no snapshot_prefix, so the run could not be resumed")
    log_path = Path(log_path) if log_path else train_log_path(name, workdir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    (workdir / info.snapshot_prefix).parent.mkdir(parents=True, exist_ok=True)
    caffe = caffe or find_caffe_tool()
    if os.sep in str(caffe):
        caffe = str(Path(caffe).resolve())  # Caffe runs in workdir; a relative tool path would break

    start = newest_snapshot(info.snapshot_prefix, workdir) if resume else None
    if start is not None and start.iteration >= info.max_iter:
        return TrainingResult([], log_path, start.iteration, start.iteration, start,
                              read_log(log_path) if log_path.exists() else TrainingLog(), 0.0,
                              already_done=True)
    state = relative_path(start.solverstate, workdir) if start else None
    command = train_command(solver_path, gpu=gpu, snapshot=state, caffe=caffe)
    start_iteration = start.iteration if start else 0
    run = _stream_caffe(command, workdir, log_path, info.max_iter, start_iteration,
                        progress=progress, niceness=niceness, description=description or name, stream=stream)
    newest = newest_snapshot(info.snapshot_prefix, workdir)
    log = run["log"]
    final = log.last_iteration if log.last_iteration is not None else start_iteration
    result = TrainingResult(command, log_path, start_iteration, final, newest, log, run["seconds"])
    pace = run["pace"]
    if len(pace) >= 2 and pace[-1][1] > pace[0][1]:
        result.seconds_per_iteration = (pace[-1][0] - pace[0][0]) / (pace[-1][1] - pace[0][1])
    _raise_unless_done(run, result, solver, info, workdir)
    return result


def _stream_caffe(command, workdir, log_path, max_iter, start_iteration, *, progress, niceness,
                  description, stream):
    """Run Caffe, appending its output to the log and watching it; what happened, as a dict.

    Ctrl-C is passed on to Caffe once (its "stop" effect snapshots first), a second one kills
    it; a NaN or infinite loss stops it with SIGTERM (no snapshot of broken weights).
    """
    from tqdm import tqdm

    env = dict(os.environ)
    env["GLOG_logtostderr"] = "1"  # no glog files in /tmp; everything goes to our log
    env["GLOG_minloglevel"] = "0"  # the INFO lines are what we parse (pycaffe users often set 2)

    def in_child():
        if niceness:
            os.nice(niceness)
        _stop_with_parent()

    log = TrainingLog()
    tail = deque(maxlen=30)
    pace = []  # (wall time, iteration) of each displayed loss
    began = time.time()
    bar = tqdm(total=max_iter, initial=start_iteration, desc=description,
               unit="it", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    diverged = False
    stop_requests = []
    with open(log_path, "a", encoding="utf-8", buffering=1) as log_file:  # line-buffered: `tail -f` works
        log_file.write(f"# ddsr: {time.strftime('%Y-%m-%d %H:%M:%S')} cwd={workdir.resolve()} "
                       f"{' '.join(map(str, command))}\n")
        log_file.flush()
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1, preexec_fn=in_child,
        )

        def on_sigint(signum, frame):
            # Caffe, in our process group, got the terminal's SIGINT too; its
            # "stop" effect saves a snapshot, so keep reading until it exits.
            stop_requests.append(signum)
            if process.poll() is not None:
                return
            if len(stop_requests) == 1:
                process.send_signal(signal.SIGINT)
                bar.write("interrupted: waiting for Caffe to save a snapshot (Ctrl-C again to kill it)")
            else:
                process.kill()

        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_handler = signal.signal(signal.SIGINT, on_sigint) if in_main_thread else None
        try:
            for line in process.stdout:
                log_file.write(line)
                tail.append(line.rstrip("\n"))
                if stream is not None:
                    stream.write(line)
                event = log.feed(line)
                if event is None:
                    continue
                if event.kind == "train_loss":
                    pace.append((time.time(), event.iteration))
                    if event.iteration >= bar.n:
                        bar.update(event.iteration - bar.n)
                if event.kind in ("train_loss", "lr", "test_output"):
                    bar.set_postfix(_progress_fields(log), refresh=False)
                if log.nonfinite is not None and not diverged:
                    diverged = True
                    process.terminate()  # SIGTERM: Caffe exits without snapshotting NaN weights
            process.wait()
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_handler)
            if process.poll() is None:
                process.kill()
                process.wait()
            if log.done and bar.n < max_iter:
                bar.update(max_iter - bar.n)
            bar.close()
    return {"log": log, "tail": tail, "pace": pace, "diverged": diverged, "interrupted": bool(stop_requests),
            "returncode": process.returncode, "seconds": time.time() - began, "log_path": log_path}


def _raise_unless_done(run, result, solver, info, workdir):
    """The error for a run that diverged, was interrupted, failed or stopped short; nothing if done."""
    log, log_path = run["log"], run["log_path"]
    plain = " ".join(map(str, result.command[1:]))
    if run["diverged"]:
        iteration, what = log.nonfinite
        good = last_good_snapshot(info.snapshot_prefix, workdir, log)
        moved = quarantine_after(info.snapshot_prefix, workdir, good.iteration if good else -1)
        value = log.loss.get(iteration) if what == "loss" else log.test[what[5:]].get(iteration)
        message = f"{what} is {value} at iteration {iteration}: training stopped (diverged). "
        if good is not None:
            message += (f"Last good snapshot: {relative_path(good.caffemodel, workdir)} "
                        f"(iteration {good.iteration}). ")
        else:
            message += "No good snapshot to go back to. "
        if moved:
            message += f"Snapshots after it were renamed *.diverged ({len(moved)} files). "
        message += f"Lower base_lr in {solver} (now {info.base_lr:g}) and train again. Log: {log_path}"
        raise TrainingDiverged(message, iteration, good)
    if run["interrupted"]:
        newest = result.snapshot
        where = f"snapshot {relative_path(newest.solverstate, workdir)}" if newest else "no snapshot"
        raise TrainingInterrupted(f"interrupted at iteration {result.final_iteration}; {where}; "
                                  f"run the same command again to resume. Log: {log_path}")
    if run["returncode"] != 0:
        reason = log.fatal or (run["tail"][-1] if run["tail"] else "no output")
        raise TrainingError(f"`{plain}` failed (exit status {run['returncode']}): {reason}. Log: {log_path}")
    if not log.done:
        raise TrainingError(f"`{plain}` ended without 'Optimization Done.'. Log: {log_path}")
