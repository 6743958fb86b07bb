"""Reading ``caffe train``'s log: the one place that knows what Caffe's glog output looks like.

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
"""

import math
import os
import re
from dataclasses import dataclass, field

_SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.(?:caffemodel|solverstate)(?:\.h5)?$")

__all__ = ["LogEvent", "TrainingLog", "parse_log_line", "read_log"]

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
