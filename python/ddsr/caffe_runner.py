"""Running ``caffe train`` and reading its log.

The one place that knows how BVLC Caffe's ``caffe`` tool is driven and what its
glog output looks like. Training is the plain command a reader could type::

    caffe train -solver solvers/ddsr_x3.prototxt [-gpu 0] [-snapshot snapshots/ddsr_x3_iter_N.solverstate]

run from the repository root (the solvers' paths are relative to it), with its
output parsed line by line for a progress bar, written unchanged to a log file,
and watched for a loss that is no longer finite.

The log lines this module reads (``src/caffe/solver.cpp`` and
``src/caffe/solvers/sgd_solver.cpp`` of BVLC Caffe, 2018-08-21 master)::

    Iteration 100 (2.5 iter/s, 40s/100 iters), loss = 0.0123
    Iteration 100, lr = 0.001
    Iteration 200, Testing net (#0)
        Test net output #0: loss = 0.0045 (* 1 = 0.0045 loss)
    Snapshotting to binary proto file snapshots/ddsr_x3_iter_200.caffemodel
    Resuming from snapshots/ddsr_x3_iter_200.solverstate
    Optimization Done.

The displayed loss of iteration ``i`` is computed with the weights *before*
update ``i``; those are exactly the weights in the snapshot named ``_iter_i``.
Caffe's SIGINT effect ("stop") writes a snapshot at the current iteration
before it exits, so an interrupted run loses nothing; SIGTERM ends it at once
without a snapshot, which is what a diverged run needs.
"""

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

# glog prefix: "I1125 20:10:00.123456 12345 solver.cpp:239] ", or with the year
# ("I20251125 ...", glog >= 0.6). Optional: lines without it are read the same way.
_GLOG_PREFIX = r"^(?:[IWEF](?:\d{4})?\d{4} [\d:.]+\s+\d+ [\w.\-]+:\d+\] )?"
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|-?nan|-?inf|-?NaN|-?Inf))"

_PATTERNS = [
    ("train_loss", re.compile(_GLOG_PREFIX + r"Iteration (\d+)(?: \([^)]*\))?, loss = " + _NUMBER)),
    ("lr", re.compile(_GLOG_PREFIX + r"Iteration (\d+), lr = " + _NUMBER)),
    ("test_start", re.compile(_GLOG_PREFIX + r"Iteration (\d+), Testing net \(#(\d+)\)")),
    ("train_output", re.compile(_GLOG_PREFIX + r"\s+Train net output #\d+: (\S+) = " + _NUMBER)),
    ("test_output", re.compile(_GLOG_PREFIX + r"\s+Test net output #\d+: (\S+) = " + _NUMBER)),
    ("snapshot", re.compile(_GLOG_PREFIX + r"Snapshotting to (?:binary proto|HDF5) file (\S+)")),
    ("resume", re.compile(_GLOG_PREFIX + r"(?:Resuming from|Restoring previous solver status from) (\S+)")),
    ("solving", re.compile(_GLOG_PREFIX + r"Solving (\S*)")),
    ("done", re.compile(_GLOG_PREFIX + r"Optimization Done\.")),
    ("stopped", re.compile(_GLOG_PREFIX + r"Optimization stopped early\.")),
    ("fatal", re.compile(r"^F(?:\d{4})?\d{4} [\d:.]+\s+\d+ [\w.\-]+:\d+\] (.*)$")),
]

_SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.(?:caffemodel|solverstate)(?:\.h5)?$")


def _to_float(text):
    # Caffe prints non-finite floats as "nan", "-nan", "inf" or "-inf".
    return float(text.lower())


@dataclass(frozen=True)
class LogEvent:
    """One meaningful line of a Caffe training log.

    ``kind`` is one of ``train_loss``, ``lr``, ``test_start``, ``train_output``,
    ``test_output``, ``snapshot``, ``resume``, ``solving``, ``done``, ``stopped``, ``fatal``.
    """

    kind: str
    iteration: int = None
    name: str = None
    value: float = None
    text: str = None


def parse_log_line(line):
    """Parse one line of ``caffe train`` output.

    Parameters
    ----------
    line : str
        A line of the log, with or without its glog prefix and newline.

    Returns
    -------
    LogEvent or None
        None for lines that carry nothing this module uses.
    """
    line = line.rstrip("\r\n")
    for kind, pattern in _PATTERNS:
        match = pattern.match(line)
        if match is None:
            continue
        groups = match.groups()
        if kind in ("train_loss", "lr"):
            return LogEvent(kind, iteration=int(groups[0]), value=_to_float(groups[1]))
        if kind == "test_start":
            return LogEvent(kind, iteration=int(groups[0]), name=groups[1])
        if kind in ("train_output", "test_output"):
            return LogEvent(kind, name=groups[0], value=_to_float(groups[1]))
        if kind in ("snapshot", "resume"):
            found = _SNAPSHOT_ITER.search(groups[0])
            return LogEvent(kind, iteration=int(found.group(1)) if found else None, text=groups[0])
        if kind in ("fatal", "solving"):
            return LogEvent(kind, text=groups[0])
        return LogEvent(kind)
    return None


@dataclass
class TrainingLog:
    """What a Caffe training log says, iteration by iteration.

    Feed it lines (:meth:`feed`) or read a file with :func:`read_log`. A log
    that holds several runs of the same solver (a run resumed from a snapshot
    appends to the log of the run it continues) is read as one history: a
    ``Resuming from ..._iter_N.solverstate`` line drops what the earlier run
    logged from iteration N on, since the resumed run repeats it. A run that
    starts from scratch (``Solving <net>`` with no resume before its first
    iteration) replaces everything before it.

    Attributes
    ----------
    loss : dict
        Iteration -> displayed training loss.
    lr : dict
        Iteration -> learning rate.
    test : dict
        Test output name (e.g. ``loss``) -> {iteration -> value}.
    snapshots : dict
        Iteration -> ``.caffemodel`` path, as Caffe named it.
    resumed_from : list of int
        Snapshot iterations the log resumed from, in order.
    done : bool
        The last run reached ``max_iter`` (``Optimization Done.`` without
        ``Optimization stopped early.`` before it).
    stopped_early : bool
        The last run was stopped by a signal (Caffe's SIGINT effect).
    fatal : str or None
        The message of a glog FATAL line (``Check failed: ...``), if any.
    nonfinite : tuple or None
        ``(iteration, what)`` of the first loss or test output that is NaN or
        infinite, ``what`` being ``"loss"`` or ``"test <name>"``.
    """

    loss: dict = field(default_factory=dict)
    lr: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    snapshots: dict = field(default_factory=dict)
    resumed_from: list = field(default_factory=list)
    done: bool = False
    stopped_early: bool = False
    fatal: str = None
    nonfinite: tuple = None
    _test_iteration: int = None
    _resuming: bool = False
    _fresh_start: bool = False

    def feed(self, line):
        """Read one line; return its :class:`LogEvent` (or None)."""
        event = parse_log_line(line)
        if event is None:
            return None
        kind = event.kind
        if kind in ("train_loss", "lr", "test_start", "snapshot") and self._fresh_start:
            # the first iteration of a run that did not resume: it starts over
            self._forget_from(0)
            self.resumed_from = []
            self._fresh_start = False
        if kind == "train_loss":
            self.loss[event.iteration] = event.value
            self._check_finite(event.iteration, "loss", event.value)
        elif kind == "lr":
            self.lr[event.iteration] = event.value
        elif kind == "test_start":
            self._test_iteration = event.iteration
        elif kind == "test_output" and self._test_iteration is not None:
            self.test.setdefault(event.name, {})[self._test_iteration] = event.value
            self._check_finite(self._test_iteration, "test " + event.name, event.value)
        elif kind == "snapshot" and ".caffemodel" in event.text and event.iteration is not None:
            self.snapshots[event.iteration] = event.text
        elif kind == "resume" and event.iteration is not None:
            self._forget_from(event.iteration)
            self.resumed_from.append(event.iteration)
            self._resuming = True
            self._fresh_start = False
        elif kind == "solving":
            # caffe.cpp logs "Resuming from" before "Solving"; pycaffe's solve(state) after it
            self._fresh_start = not self._resuming
            self._resuming = False
        elif kind == "done":
            # caffe.cpp prints "Optimization Done." even after "Optimization stopped early."
            self.done = not self.stopped_early
        elif kind == "stopped":
            self.stopped_early = True
        elif kind == "fatal":
            self.fatal = event.text
        return event

    def _forget_from(self, iteration):
        for table in (self.loss, self.lr, *self.test.values()):
            for it in [i for i in table if i >= iteration]:
                del table[it]
        for it in [i for i in self.snapshots if i > iteration]:
            del self.snapshots[it]
        self.done = False
        self.stopped_early = False
        self.fatal = None
        if self.nonfinite is not None and self.nonfinite[0] >= iteration:
            self.nonfinite = None

    def _check_finite(self, iteration, what, value):
        if self.nonfinite is None and not math.isfinite(value):
            self.nonfinite = (iteration, what)

    @property
    def last_iteration(self):
        """The highest iteration the log has a loss, lr, test or snapshot for (None if none)."""
        seen = [*self.loss, *self.lr, *self.snapshots]
        for table in self.test.values():
            seen += list(table)
        return max(seen) if seen else None

    def last_finite_loss_iteration(self):
        """The last iteration whose displayed loss was finite (None if none)."""
        finite = [i for i, v in self.loss.items() if math.isfinite(v)]
        bad = self.nonfinite[0] if self.nonfinite else None
        if bad is not None:
            finite = [i for i in finite if i < bad]
        return max(finite) if finite else None

    def rows(self):
        """One dict per iteration seen: ``iteration``, ``loss``, ``lr``, ``test_<name>``.

        Missing values are None. Sorted by iteration.
        """
        iterations = set(self.loss) | set(self.lr)
        for table in self.test.values():
            iterations |= set(table)
        rows = []
        for it in sorted(iterations):
            row = {"iteration": it, "loss": self.loss.get(it), "lr": self.lr.get(it)}
            for name, table in sorted(self.test.items()):
                row["test_" + name] = table.get(it)
            rows.append(row)
        return rows


def read_log(source):
    """Parse a Caffe training log.

    Parameters
    ----------
    source : str, os.PathLike or iterable of str
        A log file, or its lines.

    Returns
    -------
    TrainingLog
    """
    log = TrainingLog()
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                log.feed(line)
    else:
        for line in source:
            log.feed(line)
    return log


# --- solvers and snapshots ---------------------------------------------------


@dataclass(frozen=True)
class SolverInfo:
    """The fields of a solver prototxt that running and resuming need."""

    path: Path
    net: str
    max_iter: int
    snapshot: int
    snapshot_prefix: str
    display: int
    test_interval: int
    base_lr: float
    type: str


def _caffe_pb2():
    """Caffe's protobuf module. Importing it loads pycaffe, whose glog would print every
    net it builds in this process; keep it to warnings unless the user asked otherwise."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    from caffe.proto import caffe_pb2

    return caffe_pb2


def read_solver(path):
    """Read a solver prototxt with Caffe's own protobuf definitions.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    SolverInfo

    Raises
    ------
    ValueError
        If the file is missing or is not a valid ``SolverParameter``.
    """
    from google.protobuf import text_format

    caffe_pb2 = _caffe_pb2()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"solver not found: {path}")
    param = caffe_pb2.SolverParameter()
    try:
        text_format.Merge(path.read_text(), param)
    except text_format.ParseError as exc:
        raise ValueError(f"{path} is not a valid Caffe solver: {exc}") from None
    return SolverInfo(
        path=path,
        net=param.net or param.train_net,
        max_iter=param.max_iter,
        snapshot=param.snapshot,
        snapshot_prefix=param.snapshot_prefix,
        display=param.display,
        test_interval=param.test_interval,
        base_lr=param.base_lr,
        type=param.type,
    )


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of a run: its iteration and files (``solverstate`` may be None)."""

    iteration: int
    caffemodel: Path
    solverstate: Path = None


def list_snapshots(prefix, workdir="."):
    """The snapshots Caffe wrote for ``snapshot_prefix``, oldest first.

    Parameters
    ----------
    prefix : str
        The solver's ``snapshot_prefix`` (e.g. ``snapshots/ddsr_x3``); a
        relative prefix is relative to ``workdir``, as it is for Caffe.
    workdir : str or Path
        Caffe's working directory (the repository root).

    Returns
    -------
    list of Snapshot
        Only snapshots whose ``.caffemodel`` exists; ``solverstate`` is set
        when the matching ``.solverstate`` exists too.
    """
    base = Path(workdir) / prefix
    folder, stem = base.parent, base.name
    if not folder.is_dir():
        return []
    found = []
    pattern = re.compile(re.escape(stem) + r"_iter_(\d+)\.caffemodel$")
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match is None:
            continue
        state = path.with_suffix(".solverstate")
        found.append(Snapshot(int(match.group(1)), path, state if state.is_file() else None))
    return sorted(found, key=lambda s: s.iteration)


def newest_snapshot(prefix, workdir=".", resumable=True):
    """The snapshot with the highest iteration (one with a solverstate if ``resumable``), or None."""
    snaps = [s for s in list_snapshots(prefix, workdir) if s.solverstate or not resumable]
    return snaps[-1] if snaps else None


def weights_are_finite(caffemodel):
    """True if every weight in a binary ``.caffemodel`` is finite (reads it with caffe_pb2)."""
    import numpy as np

    net = _caffe_pb2().NetParameter()
    net.ParseFromString(Path(caffemodel).read_bytes())
    for layer in list(net.layer) + list(net.layers):
        for blob in layer.blobs:
            values = np.asarray(blob.data, dtype=np.float32)
            if values.size and not np.isfinite(values).all():
                return False
    return True


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

    def __init__(self, message, iteration, last_good):
        super().__init__(message)
        self.iteration = iteration
        self.last_good = last_good


class TrainingInterrupted(TrainingError):
    """Training was interrupted (Ctrl-C); Caffe snapshotted where it stopped."""


def exit_status(prog, main):
    """Run a training tool's ``main()`` and return the exit status the tools document.

    0 (or what ``main`` returns) done; 3 diverged (NaN/inf loss); 130 interrupted; 1 any
    other error, reported in one line ``<prog>: error: <why>`` on stderr.
    """
    try:
        return main()
    except TrainingDiverged as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 3
    except TrainingInterrupted as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, OSError) as exc:  # TrainingError is a RuntimeError
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


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


def relative_path(path, workdir):
    """``path`` relative to ``workdir`` when it is inside it (as Caffe, run there, needs it), else as given."""
    try:
        return Path(path).resolve().relative_to(Path(workdir).resolve())
    except ValueError:
        return Path(path)


def _quarantine_after(prefix, workdir, iteration):
    """Rename snapshots newer than ``iteration`` to ``*.diverged`` so resuming cannot pick them."""
    moved = []
    for snap in list_snapshots(prefix, workdir):
        if snap.iteration > iteration:
            for path in (snap.caffemodel, snap.solverstate):
                if path is not None and path.exists():
                    path.rename(path.with_name(path.name + ".diverged"))
                    moved.append(path)
    return moved


def last_good_snapshot(prefix, workdir, log):
    """The newest snapshot taken at or before the last finite displayed loss, with finite weights."""
    limit = log.last_finite_loss_iteration()
    if limit is None:
        return None
    for snap in reversed(list_snapshots(prefix, workdir)):
        if snap.iteration <= limit and weights_are_finite(snap.caffemodel):
            return snap
    return None


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
        ``runs/<solver name>/train.log`` under ``workdir``).
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
    from tqdm import tqdm

    workdir = Path(workdir)
    solver_path = Path(solver)
    info = read_solver(solver_path if solver_path.is_absolute() else workdir / solver_path)
    name = solver_path.stem
    if not info.snapshot_prefix:
        raise ValueError(f"{solver}: no snapshot_prefix, so the run could not be resumed")
    log_path = Path(log_path) if log_path else workdir / "runs" / name / "train.log"
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
    bar = tqdm(total=info.max_iter, initial=start_iteration, desc=description or name,
               unit="it", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    diverged = False
    with open(log_path, "a", encoding="utf-8", buffering=1) as log_file:  # line-buffered: `tail -f` works
        log_file.write(f"# ddsr: {time.strftime('%Y-%m-%d %H:%M:%S')} cwd={workdir.resolve()} "
                       f"{' '.join(map(str, command))}\n")
        log_file.flush()
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1, preexec_fn=in_child,
        )
        stop_requests = []

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
            if log.done and bar.n < info.max_iter:
                bar.update(info.max_iter - bar.n)
            bar.close()
        interrupted = bool(stop_requests)

    seconds = time.time() - began
    newest = newest_snapshot(info.snapshot_prefix, workdir)
    final = log.last_iteration if log.last_iteration is not None else start_iteration
    result = TrainingResult(command, log_path, start_iteration, final, newest, log, seconds)
    if len(pace) >= 2 and pace[-1][1] > pace[0][1]:
        result.seconds_per_iteration = (pace[-1][0] - pace[0][0]) / (pace[-1][1] - pace[0][1])
    plain = " ".join(map(str, command[1:]))

    if diverged:
        iteration, what = log.nonfinite
        good = last_good_snapshot(info.snapshot_prefix, workdir, log)
        moved = _quarantine_after(info.snapshot_prefix, workdir, good.iteration if good else -1)
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
    if interrupted:
        where = f"snapshot {relative_path(newest.solverstate, workdir)}" if newest else "no snapshot"
        raise TrainingInterrupted(
            f"interrupted at iteration {final}; {where}; run the same command again to resume. Log: {log_path}")
    if process.returncode != 0:
        reason = log.fatal or (tail[-1] if tail else "no output")
        raise TrainingError(f"`{plain}` failed (exit status {process.returncode}): {reason}. Log: {log_path}")
    if not log.done:
        raise TrainingError(f"`{plain}` ended without 'Optimization Done.'. Log: {log_path}")
    return result
