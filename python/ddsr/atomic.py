"""Atomic writes: a file or folder appears under its name complete, or not at all.

Everything the tools write (reports, generated nets, converted weights, databases,
downloaded files) goes through here, so that an interrupted or failed run never
leaves a half-written file that a later run would take for a good one.

Three things make that hold when a run is stopped from outside:

- :func:`interrupts_as_exceptions` turns SIGINT and SIGTERM into
  :class:`Interrupted`, so the clean-up of the context managers here runs
  (SIGTERM would otherwise end the process on the spot); the tools exit with
  ``128 + signal`` (130, 143).
- Nothing is renamed into place once a signal has arrived, even when the
  exception was swallowed on the way (Python ignores exceptions raised in
  ``__del__`` methods and weakref callbacks, where h5py closes its objects).
- A temporary name holds the process id of its writer
  (``.<name>.<kind>-<pid>-<random>``), so that :func:`remove_stale_temporaries`
  can tell those of a killed run (``kill -9``, a power cut) from those of a
  run still writing.
"""

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "Interrupted",
    "interrupts_as_exceptions",
    "raise_if_interrupted",
    "exit_status",
    "interrupted_message",
    "temporary_directory",
    "StaleTemporary",
    "remove_stale_temporaries",
    "replacing",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "write_png_atomic",
    "replacing_directory",
    "check_replaceable",
]

_INTERRUPTING = (signal.SIGINT, signal.SIGTERM)
# Signals received while interrupts_as_exceptions() was active, oldest first.
_received = []
# > 0 while a rename into place or a clean-up runs: a signal then waits for its end.
_deferring = 0
# Temporaries without a process id (made before names held one) count as stale after this.
LEGACY_STALE_AFTER_S = 3600.0
# Middles of temporary names: ours (tmp, old) and the fetch folders of earlier versions (partial).
_KINDS = ("tmp", "old", "partial")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received while :func:`interrupts_as_exceptions` was active.

    A ``KeyboardInterrupt``, so that code catching that treats SIGTERM alike.

    Attributes
    ----------
    signum : int
    exit_status : int
        ``128 + signum``: 130 for SIGINT, 143 for SIGTERM, as a shell reports them.
    after_commit : Path or None
        The file or folder that had just been renamed into place, complete, when
        the signal arrived (it came during the rename); ``None`` otherwise.
    """

    def __init__(self, signum, after_commit=None):
        self.signum = int(signum)
        self.exit_status = 128 + self.signum
        self.after_commit = after_commit
        super().__init__(signal.Signals(self.signum).name)

    @property
    def signal_name(self):
        return signal.Signals(self.signum).name


def _on_signal(signum, frame):
    _received.append(signum)
    if not _deferring:
        raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_as_exceptions():
    """Raise :class:`Interrupted` on SIGINT and SIGTERM while the block runs.

    For a tool's ``main``. A signal that the process was started with ignored
    (``nohup``, ``cmd &`` in a script) stays ignored. An :class:`Interrupted`
    that Python had to drop (raised in a weakref callback or ``__del__``) is
    not printed as "Exception ignored in ..."; :func:`raise_if_interrupted`
    raises it again. Outside the main thread (where Python cannot set
    handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    previous_hook = sys.unraisablehook
    del _received[:]
    try:
        for signum in _INTERRUPTING:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, _on_signal)
        sys.unraisablehook = functools.partial(_quiet_if_interrupted, previous_hook)
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        del _received[:]


def _quiet_if_interrupted(previous_hook, unraisable):
    # An Interrupted raised where Python cannot propagate it (a weakref callback, __del__)
    # is recorded in _received and raised again by raise_if_interrupted: no traceback.
    if not isinstance(unraisable.exc_value, Interrupted):
        previous_hook(unraisable)


def raise_if_interrupted():
    """Raise :class:`Interrupted` if a signal has arrived, even if its exception was swallowed.

    Called before every rename into place, and in the long loops (HDF5
    writing, reading images) so that a swallowed interrupt still ends them.
    """
    if _received:
        raise Interrupted(_received[0])


def exit_status(exc):
    """The exit status for an interrupt: ``128 + signal`` (130 for a plain ``KeyboardInterrupt``)."""
    return getattr(exc, "exit_status", 128 + signal.SIGINT)


def interrupted_message(exc, unchanged):
    """The one line a tool prints for an interrupt.

    ``unchanged`` says what was kept, e.g. ``"the previous database (if any) is
    unchanged"``; it is replaced by what was written when the signal came
    during the final rename (:attr:`Interrupted.after_commit`).
    """
    name = getattr(exc, "signal_name", "SIGINT")
    done = getattr(exc, "after_commit", None)
    if done is not None:
        return f"interrupted ({name}) just after {done} was written complete"
    return f"interrupted ({name}); {unchanged}"


@contextlib.contextmanager
def _signals_deferred():
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


@contextlib.contextmanager
def _committing(path):
    """Rename into place with signals held back; one that came meanwhile is raised after it."""
    with _signals_deferred():
        raise_if_interrupted()
        seen = len(_received)
        yield
    if len(_received) > seen:
        raise Interrupted(_received[seen], after_commit=Path(path))


def _temp_prefix(name, kind):
    return f".{name}.{kind}-{os.getpid()}-"


def temporary_directory(final, kind="tmp"):
    """A new private folder ``.<name>.<kind>-<pid>-<random>`` beside ``final``.

    The name tells :func:`remove_stale_temporaries` whose it is. The caller
    removes it (or renames it into place).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(final.name, kind), dir=final.parent))


class StaleTemporary(NamedTuple):
    """A temporary file or folder left by a run that is gone, as removed."""

    path: Path
    pid: int  # None for a name without a process id
    bytes: int

    def describe(self):
        """``removed PATH (494.0 MB), left by an interrupted run (process 1234, gone)``."""
        owner = "an older version" if self.pid is None else f"process {self.pid}, gone"
        return f"removed {self.path} ({self.bytes / 1e6:.1f} MB), left by an interrupted run ({owner})"


def _process_started_at(pid):
    """Epoch seconds at which process ``pid`` started, None if unknown (not Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _owner_alive(pid, made_before):
    """Whether the process that made a temporary (pid, at latest ``made_before``) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = _process_started_at(pid)
    # A process that started after the temporary was last changed only reuses the number.
    return started is None or started <= made_before + 1.0


def _tree_bytes_and_mtime(path):
    st = os.lstat(path)
    total, newest = st.st_size, st.st_mtime
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    st = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                total += st.st_size
                newest = max(newest, st.st_mtime)
    return total, newest


def remove_stale_temporaries(final):
    """Remove the temporaries of ``final`` that runs which are gone left beside it.

    Parameters
    ----------
    final : path-like
        A file or folder written through this module.

    Returns
    -------
    list of StaleTemporary
        What was removed, for the tool to report (this module prints nothing).

    Notes
    -----
    A temporary ``.<name>.<kind>-<pid>-*`` is stale when process ``pid`` no
    longer runs, or when the process now holding that number started after the
    temporary was last changed (the number was reused). One of an older name
    without a process id is stale when nothing in it changed for
    ``LEGACY_STALE_AFTER_S``. Temporaries of a live writer are left alone.
    """
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(?:{'|'.join(_KINDS)})-(?:(\d+)-)?[\w]+")
    removed = []
    for entry in sorted(parent.iterdir()):
        match = pattern.match(entry.name)
        if match is None:
            continue
        try:
            size, newest = _tree_bytes_and_mtime(entry)
        except OSError:
            continue
        pid = int(match.group(1)) if match.group(1) else None
        if pid is None:
            if time.time() - newest < LEGACY_STALE_AFTER_S:
                continue
        elif _owner_alive(pid, newest):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        if not os.path.lexists(entry):
            removed.append(StaleTemporary(entry, pid, size))
    return removed


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def replacing(path, suffix=".tmp"):
    """Yield a temporary file path beside ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        The final file. Its parent folders are created.
    suffix : str
        Suffix of the temporary name (``.<name>.<random><suffix>``).

    Yields
    ------
    Path
        An empty file in the same folder (so the rename is atomic) to write to.

    Notes
    -----
    The file gets the mode an ordinary new file would (``0666 & ~umask``), not
    ``mkstemp``'s private 0600. On any exception, ``KeyboardInterrupt`` included,
    the temporary file is deleted and ``path`` is untouched; nothing is renamed
    once a signal has arrived (:func:`raise_if_interrupted`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name, "tmp"),
                               suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with _committing(path):
            os.replace(tmp, path)
    finally:
        with _signals_deferred():
            if os.path.lexists(tmp):
                os.unlink(tmp)


def write_bytes_atomic(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path, text):
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_png_atomic(path, image):
    """Save a uint8 (H, W) or (H, W, 3) array as PNG, atomically (PIL, fast compression)."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    # Fast compression: the images are for looking at, and level 6 costs 3x the time.
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    write_bytes_atomic(path, buf.getvalue())


def _fsync_tree(folder):
    for item in sorted(Path(folder).iterdir()):
        with open(item, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_directory(new, out):
    if not (out.exists() or out.is_symlink()):
        os.rename(new, out)
        return
    old = temporary_directory(out, "old")
    if out.is_symlink():
        old.rmdir()  # a link cannot replace the empty placeholder; its name is still ours
    os.rename(out, old)  # replaces the empty placeholder
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)
        raise
    if old.is_symlink():  # the old folder was a link to a folder elsewhere: drop only the link
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


def check_replaceable(out_dir, marker, what):
    """Raise unless :func:`replacing_directory` may (re)place ``out_dir``; before any work is done.

    Parameters
    ----------
    out_dir : path-like
    marker : str
        A file that a folder of this kind always holds (``manifest.json``, ``run.json``): a
        non-empty folder without it is someone else's and is never replaced.
    what : str
        The kind of folder, for messages (``a database``).

    Raises
    ------
    FileExistsError
        ``out_dir`` is a file (or a link), or a non-empty folder without ``marker``.
    NotADirectoryError
        A file stands where a parent folder of ``out_dir`` should be.
    PermissionError
        No folder can be created next to ``out_dir``.
    """
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise FileExistsError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise FileExistsError(f"{out} is not empty and holds no {marker}: "
                                  f"refusing to replace a folder that is not {what}")
    parent = out.parent
    while not (parent.exists() or parent.is_symlink()):
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write the output folder {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the output folder {out}: {parent} is not writable")


@contextlib.contextmanager
def replacing_directory(out_dir, sync=True):
    """Build a folder in a temporary sibling and move it into place only on success.

    Parameters
    ----------
    out_dir : path-like
        The final folder. Its parent folders are created.
    sync : bool
        fsync the files (one level) and the folder before the rename, so that a
        crash cannot leave a renamed but empty folder.
    Yields
    ------
    Path
        The temporary folder to write into (``.<name>.tmp-<pid>-*`` next to ``out_dir``).

    Notes
    -----
    On success the previous ``out_dir`` (if any) is renamed aside, the new one
    renamed into place, and the old one deleted: the folder is at every moment
    either the old one or the new one (for the instant between the two renames,
    the old one is in ``.<name>.old-*``). On any exception, ``KeyboardInterrupt``
    included, the temporary folder is deleted and ``out_dir`` is untouched;
    nothing is renamed once a signal has arrived (:func:`raise_if_interrupted`).
    A symbolic link at ``out_dir`` is replaced by the folder (its target is
    left alone).
    """
    out = Path(out_dir)
    tmp = temporary_directory(out)
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the result is an ordinary folder
        yield tmp
        if sync:
            _fsync_tree(tmp)
        with _committing(out):
            _replace_directory(tmp, out)
    except BaseException:
        with _signals_deferred():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
