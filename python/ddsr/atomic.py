"""Atomic writes: a file or folder appears under its name complete, or not at all.

Everything the tools write (reports, generated nets, converted weights, databases,
downloaded files) goes through here, so that an interrupted or failed run never
leaves a half-written file that a later run would take for a good one.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "replacing",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "write_png_atomic",
    "replacing_directory",
]


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
    the temporary file is deleted and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
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
    if not out.exists():
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
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
        The temporary folder to write into (``.<name>.tmp-*`` next to ``out_dir``).

    Notes
    -----
    On success the previous ``out_dir`` (if any) is renamed aside, the new one
    renamed into place, and the old one deleted: the folder is at every moment
    either the old one or the new one (for the instant between the two renames,
    the old one is in ``.<name>.old-*``). On any exception, ``KeyboardInterrupt``
    included, the temporary folder is deleted and ``out_dir`` is untouched.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the result is an ordinary folder
        yield tmp
        if sync:
            _fsync_tree(tmp)
        _replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
