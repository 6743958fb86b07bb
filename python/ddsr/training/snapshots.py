"""A run's solver and snapshots: what resuming, curves and the workflows read from disk.

Caffe writes ``<snapshot_prefix>_iter_<N>.caffemodel`` and ``.solverstate`` (the prefix is
relative to Caffe's working directory, the repository root).
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SolverInfo", "Snapshot", "read_solver", "list_snapshots", "newest_snapshot",
           "weights_are_finite", "remove_snapshots", "quarantine_after", "last_good_snapshot"]


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


def quarantine_after(prefix, workdir, iteration):
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


def remove_snapshots(prefix, workdir="."):
    """Delete every snapshot file of a run (``--restart``); returns how many files went."""
    removed = 0
    for snap in list_snapshots(prefix, workdir):
        for path in (snap.caffemodel, snap.solverstate):
            if path is not None:
                path.unlink()
                removed += 1
    return removed
