"""Caffe HDF5 training databases: shuffled, sharded, written atomically, read back.

A database is a folder (default ``data/h5/x{scale}/``) holding, per split
(``train``, ``val``):

- shards ``<split>_000.h5``, ``<split>_001.h5``, ... each with two float32
  datasets, ``data`` (N x 1 x n x n, the LR patches) and ``label``
  (N x 1 x sn x sn, the HR blocks), values in [0, 1], contiguous and
  uncompressed, as Caffe's ``HDF5Data`` layer reads them;
- a list file ``<split>.txt`` naming the shards, one per line, the file that
  ``hdf5_data_param { source: ... }`` points to;

and one ``manifest.json`` describing how it was made.

Limits, because Caffe's ``HDF5Data`` reads a whole shard into one blob per
dataset: no blob reaches 2^31 elements (``Blob::Reshape`` checks
``count <= INT_MAX``) and no file exceeds ``max_shard_bytes`` (1 GB by
default). Caffe reads the list file with ``operator>>``, so a path holding
whitespace cannot be listed; it is refused here.

Atomicity: everything is written into a temporary sibling folder which
replaces the output folder only when complete (:func:`atomic_directory`);
an error or interruption leaves the previous database as it was.
"""

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from ddsr.atomic import replacing_directory
from ddsr.matlab import im2single

__all__ = [
    "MAX_SHARD_BYTES",
    "MAX_BLOB_ELEMENTS",
    "MANIFEST_NAME",
    "shuffled_order",
    "shard_sizes",
    "write_shard",
    "read_shard",
    "list_path",
    "write_list_file",
    "read_list_file",
    "read_split",
    "read_manifest",
    "check_replaceable",
    "atomic_directory",
    "write_split",
    "write_manifest",
    "build_database",
]

MAX_SHARD_BYTES = 10**9
MAX_BLOB_ELEMENTS = 2**31 - 1
MANIFEST_NAME = "manifest.json"
# Room left in each shard for HDF5's own metadata (superblock, object headers:
# about 2 KiB for two contiguous datasets).
_HEADER_ALLOWANCE = 64 * 1024
# Rows converted and written per h5py call: bounds the temporary copies.
_ROWS_PER_WRITE = 16384


def shuffled_order(num_samples, seed, multiple_of=1):
    """A fixed-seed random order of the samples, cut to a multiple of ``multiple_of``.

    Parameters
    ----------
    num_samples : int
    seed : int
        Seed of numpy's ``default_rng`` (PCG64).
    multiple_of : int
        Keep the first ``num_samples // multiple_of * multiple_of`` indices of
        the permutation. SRCNN's and FSRCNN's ``generate_train.m`` shuffle
        (``randperm``) and then write ``floor(count / 128)`` chunks of 128
        patches, dropping the remainder; ``multiple_of=128`` does the same.

    Returns
    -------
    ndarray of int64
    """
    if int(multiple_of) != multiple_of or multiple_of < 1:
        raise ValueError(f"multiple_of must be a positive integer, got {multiple_of!r}")
    order = np.random.default_rng(seed).permutation(int(num_samples))
    keep = num_samples // int(multiple_of) * int(multiple_of)
    return order[:keep]


def shard_sizes(num_samples, data_shape, label_shape, max_shard_bytes=MAX_SHARD_BYTES,
                itemsize=4):
    """Rows per shard: as few shards as the limits allow, of near-equal sizes.

    Parameters
    ----------
    num_samples : int
    data_shape, label_shape : tuple of int
        Shape of one sample of each dataset (e.g. ``(1, 7, 7)``, ``(1, 21, 21)``).
    max_shard_bytes : int
        Largest file size allowed; 64 KiB of it is kept for HDF5 metadata.
    itemsize : int
        Bytes per element (4 for float32).

    Returns
    -------
    list of int
        Rows of each shard, summing to ``num_samples`` (empty when it is 0).
        Each shard's largest dataset has at most ``MAX_BLOB_ELEMENTS`` elements.
    """
    data_elements = int(np.prod(data_shape))
    label_elements = int(np.prod(label_shape))
    row_bytes = (data_elements + label_elements) * itemsize
    by_bytes = (int(max_shard_bytes) - _HEADER_ALLOWANCE) // row_bytes
    by_elements = MAX_BLOB_ELEMENTS // max(data_elements, label_elements)
    rows = min(by_bytes, by_elements)
    if rows < 1:
        raise ValueError(f"max_shard_bytes={max_shard_bytes} cannot hold one sample "
                         f"({row_bytes} bytes + {_HEADER_ALLOWANCE} for HDF5 metadata)")
    if num_samples == 0:
        return []
    num_shards = -(-int(num_samples) // rows)
    base, extra = divmod(int(num_samples), num_shards)
    return [base + 1] * extra + [base] * (num_shards - extra)


def _as_float32_rows(rows):
    """float32 NCHW rows: uint8 goes through ``im2single``, (N, h, w) gains C = 1."""
    rows = np.asarray(rows)
    rows = im2single(rows) if rows.dtype == np.uint8 else rows.astype(np.float32, copy=False)
    return rows[:, None] if rows.ndim == 3 else rows


def write_shard(path, data, label, index=None):
    """Write one Caffe HDF5 shard: datasets ``data`` and ``label``, float32 NCHW.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file to create (overwritten if present).
    data, label : ndarray, (N, h, w) or (N, 1, h, w)
        float arrays are stored as float32; uint8 arrays are converted with
        ``ddsr.matlab.im2single`` (MATLAB's ``single(x) / 255``).
    index : ndarray of int, optional
        Rows of ``data`` and ``label`` to write, in this order (default: all).
        They are gathered and written ``_ROWS_PER_WRITE`` at a time, so a
        shuffled shard never needs a second full copy in memory.

    Returns
    -------
    int
        Number of rows written.

    Notes
    -----
    Contiguous, uncompressed datasets in the oldest HDF5 file format that
    holds them (h5py's default ``libver='earliest'``), which Caffe's HDF5
    1.8/1.10 reads.
    """
    import h5py

    if len(data) != len(label):
        raise ValueError(f"data has {len(data)} rows but label has {len(label)}")
    if index is None:
        index = np.arange(len(data))
    index = np.asarray(index)
    n = len(index)
    data_shape = _as_float32_rows(data[:1]).shape[1:]
    label_shape = _as_float32_rows(label[:1]).shape[1:]
    with h5py.File(path, "w") as f:
        data_set = f.create_dataset("data", shape=(n,) + data_shape, dtype="<f4")
        label_set = f.create_dataset("label", shape=(n,) + label_shape, dtype="<f4")
        for start in range(0, n, _ROWS_PER_WRITE):
            rows = index[start:start + _ROWS_PER_WRITE]
            stop = start + len(rows)
            data_set[start:stop] = _as_float32_rows(data[rows])
            label_set[start:stop] = _as_float32_rows(label[rows])
    return n


def read_shard(path):
    """``(data, label)`` float32 arrays of one shard."""
    import h5py

    with h5py.File(path, "r") as f:
        return f["data"][()], f["label"][()]


def list_path(shard, relative_to=None):
    """A shard's entry in a list file: relative to ``relative_to`` when under it, else absolute.

    Caffe opens the listed paths relative to its working directory; the
    project's documented working directory is the repository root.
    """
    shard = Path(os.path.abspath(shard))
    if relative_to is not None:
        root = Path(os.path.abspath(relative_to))
        if shard.is_relative_to(root):
            return shard.relative_to(root).as_posix()
    return shard.as_posix()


def _check_list_entry(entry):
    if any(c.isspace() for c in entry):
        raise ValueError(f"Caffe's HDF5Data layer cannot read a path with whitespace: {entry!r}")
    return entry


def write_list_file(path, entries):
    """Write a Caffe ``HDF5Data`` list file: one path per line.

    Raises
    ------
    ValueError
        An entry holds whitespace (Caffe splits the file on whitespace).
    """
    entries = [_check_list_entry(str(e)) for e in entries]
    Path(path).write_text("".join(e + "\n" for e in entries))


def read_list_file(path, relative_to=None):
    """Shard paths of a list file, relative ones resolved against ``relative_to`` (default: CWD)."""
    base = Path(relative_to) if relative_to is not None else Path.cwd()
    return [p if p.is_absolute() else base / p
            for p in (Path(token) for token in Path(path).read_text().split())]


def read_split(list_file, relative_to=None):
    """``(data, label)`` of all the shards a list file names, concatenated in order."""
    parts = [read_shard(p) for p in read_list_file(list_file, relative_to)]
    if not parts:
        raise ValueError(f"{list_file} lists no shard")
    return (np.concatenate([data for data, _ in parts]),
            np.concatenate([label for _, label in parts]))


def read_manifest(folder):
    """The ``manifest.json`` of a database folder, as a dict."""
    return json.loads((Path(folder) / MANIFEST_NAME).read_text())


def check_replaceable(out_dir):
    """Raise unless ``out_dir`` can be (re)placed by a database, before any work is done.

    Raises
    ------
    FileExistsError
        ``out_dir`` is a file, or a non-empty folder that is not a database
        (no ``manifest.json``): it is never replaced.
    NotADirectoryError
        A file stands where a parent folder of ``out_dir`` should be.
    PermissionError
        No folder can be created next to ``out_dir``.
    """
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise FileExistsError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
            raise FileExistsError(f"{out} is not empty and holds no {MANIFEST_NAME}: "
                                  "refusing to replace a folder that is not a database")
    parent = out.parent
    while not (parent.exists() or parent.is_symlink()):
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write the output folder {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the output folder {out}: {parent} is not writable")


@contextlib.contextmanager
def atomic_directory(out_dir, sync=True):
    """Build a database in a temporary sibling folder and move it into place only on success.

    :func:`ddsr.atomic.replacing_directory`, after :func:`check_replaceable`: an
    unwritable output, or a folder that is not a database, fails before any work.

    Parameters
    ----------
    out_dir : path-like
        Final folder.
    sync : bool
        fsync the files and the folder before the rename.

    Yields
    ------
    Path
        The temporary folder to write into (``.<name>.tmp-*`` next to ``out_dir``).
    """
    check_replaceable(out_dir)
    with replacing_directory(out_dir, sync=sync) as tmp:
        yield tmp


def write_split(folder, name, data, label, index, max_shard_bytes=MAX_SHARD_BYTES,
                list_relative_to=None, final_folder=None):
    """Write one split (shards + list file) of a database.

    Parameters
    ----------
    folder : path-like
        Where to write now (the temporary folder of :func:`atomic_directory`).
    name : str
        Split name: shards ``<name>_000.h5`` ..., list file ``<name>.txt``.
    data, label : ndarray
        All the samples, as accepted by :func:`write_shard`.
    index : ndarray of int
        The rows to write, in order (e.g. from :func:`shuffled_order`).
    max_shard_bytes : int
    list_relative_to : path-like, optional
        Write list entries relative to this folder when the shard is under it.
    final_folder : path-like, optional
        Where the database will live (list entries name the final location);
        default ``folder``.

    Returns
    -------
    dict
        ``list_file``, ``num_patches`` and ``shards`` (``file``,
        ``num_patches``, ``bytes`` of each), for the manifest.
    """
    folder = Path(folder)
    final_folder = Path(final_folder) if final_folder is not None else folder
    index = np.asarray(index)
    data_shape = _as_float32_rows(data[:1]).shape[1:]
    label_shape = _as_float32_rows(label[:1]).shape[1:]
    sizes = shard_sizes(len(index), data_shape, label_shape, max_shard_bytes)
    shards, entries, start = [], [], 0
    for number, size in enumerate(sizes):
        file_name = f"{name}_{number:03d}.h5"
        entries.append(list_path(final_folder / file_name, list_relative_to))
        write_shard(folder / file_name, data, label, index[start:start + size])
        start += size
        shards.append({"file": file_name, "num_patches": size,
                       "bytes": (folder / file_name).stat().st_size})
    write_list_file(folder / f"{name}.txt", entries)
    return {"list_file": f"{name}.txt", "num_patches": int(len(index)), "shards": shards,
            "data_shape": [int(d) for d in data_shape],
            "label_shape": [int(d) for d in label_shape]}


def write_manifest(folder, manifest):
    """Write ``manifest.json`` (sorted keys, indented) into ``folder``."""
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    (Path(folder) / MANIFEST_NAME).write_text(text)


def _duplicates(images, checksums):
    return sorted(f"{im['set']}/{im['file']}" for im in images if im["sha256"] in checksums)


def build_database(out_dir, train_sources, scale, patch_size=7, stride=4, seed=0,
                   multiple_of=128, val_sources=(), flip=False, rot90=False, downscales=(),
                   skip_bad=False, max_shard_bytes=MAX_SHARD_BYTES, list_relative_to=None,
                   held_out_sha256=(), params=None, progress=False, sync=True):
    """Build a training database (and its validation split) into ``out_dir``, atomically.

    Parameters
    ----------
    out_dir : path-like
        The database folder; replaced only when the new one is complete.
    train_sources, val_sources : sequence of (str, path-like)
        ``(set name, image file)`` of the training and validation images.
        No validation split when ``val_sources`` is empty.
    scale, patch_size, stride : int
        As in :func:`ddsr.data.patches.extract_patch_pairs`.
    seed : int
        Seed of the shuffles (:func:`shuffled_order`), training and validation.
    multiple_of : int
        Keep a multiple of this many training patches (SRCNN's 128-patch
        chunks); the validation split keeps all of its patches.
    flip, rot90, downscales
        Training augmentation (:func:`ddsr.data.patches.augmentations`); the
        validation images are never augmented.
    skip_bad : bool
        Skip unreadable images (recorded in the manifest) instead of failing.
    max_shard_bytes : int
        Largest shard file.
    list_relative_to : path-like, optional
        List-file entries are relative to this folder when under it.
    held_out_sha256 : collection of str
        Checksums of images the validation split must not hold (the test
        sets); the training images are always held out too.
    params : dict, optional
        Extra entries for the manifest's ``params`` (e.g. the data root).
    progress : bool
        Progress bars over the images.
    sync : bool
        fsync before the final rename (:func:`atomic_directory`).

    Returns
    -------
    dict
        The manifest written to ``out_dir/manifest.json``.

    Raises
    ------
    ValueError
        No training patch (all images skipped, or fewer than ``multiple_of``),
        or a validation image is also a training or test image.
    OSError
        An unreadable image (without ``skip_bad``), an unwritable output or a
        full disk; the previous database is left as it was.
    """
    from ddsr.data.patches import collect_patch_pairs

    out_dir = Path(out_dir)
    _check_list_entry(list_path(out_dir / "train_000.h5", list_relative_to))
    with atomic_directory(out_dir, sync=sync) as tmp:
        train = collect_patch_pairs(train_sources, scale, patch_size, stride, flip, rot90,
                                    downscales, skip_bad, progress)
        if len(train) == 0:
            raise ValueError("no training patches: every training image was skipped")
        order = shuffled_order(len(train), seed, multiple_of)
        if len(order) == 0:
            raise ValueError(f"only {len(train)} training patches, fewer than "
                             f"--multiple-of {multiple_of}")
        val = None
        if val_sources:
            val = collect_patch_pairs(val_sources, scale, patch_size, stride,
                                      skip_bad=skip_bad, progress=progress)
            leaked = _duplicates(val.images, {im["sha256"] for im in train.images})
            leaked += _duplicates(val.images, set(held_out_sha256))
            if leaked:
                raise ValueError("validation images are also training or test images: "
                                 + ", ".join(leaked))
            if len(val) == 0:
                raise ValueError("no validation patches: every validation image was skipped")
        settings = {
            "scale": int(scale), "patch_size": int(patch_size),
            "label_size": int(scale) * int(patch_size), "stride": int(stride),
            "seed": int(seed), "multiple_of": int(multiple_of),
            "flip": bool(flip), "rot90": bool(rot90),
            "downscale": [float(f) for f in downscales],
            "skip_bad": bool(skip_bad), "max_shard_bytes": int(max_shard_bytes),
            "shuffle": "numpy.random.default_rng(seed).permutation",
            "pipeline": "imread > rgb2y > modcrop(s) > im2single > imresize(1/s) single; "
                        "LR patch at (y, x) <-> HR block [s*y : s*(y+n), s*x : s*(x+n)]",
            **(params or {}),
        }
        try:
            manifest = _write_database(tmp, out_dir, train, order, val, settings,
                                       max_shard_bytes, list_relative_to)
        except OSError as exc:
            raise OSError(f"cannot write the database {out_dir}: {exc} "
                          "(nothing written; the previous database is unchanged)") from exc
    return manifest


def _write_database(tmp, out_dir, train, order, val, settings, max_shard_bytes,
                    list_relative_to):
    """The splits and the manifest of :func:`build_database`, into ``tmp``."""
    import ddsr

    write = dict(max_shard_bytes=max_shard_bytes, list_relative_to=list_relative_to,
                 final_folder=out_dir)
    splits = {"train": write_split(tmp, "train", train.data, train.label, order, **write)}
    splits["train"].update(num_extracted=len(train), num_dropped=len(train) - len(order),
                           images=train.images, skipped=train.skipped)
    if val is not None:
        val_order = shuffled_order(len(val), settings["seed"])
        splits["val"] = write_split(tmp, "val", val.data, val.label, val_order, **write)
        splits["val"].update(num_extracted=len(val), num_dropped=0,
                             images=val.images, skipped=val.skipped)
    manifest = {
        "tool": "tools/make_h5.py",
        "version": ddsr.__version__,
        "num_patches": splits["train"]["num_patches"],
        "num_skipped": sum(len(s["skipped"]) for s in splits.values()),
        "seed": settings["seed"],
        "params": settings,
        "format": {"datasets": {"data": "N x 1 x n x n", "label": "N x 1 x sn x sn"},
                   "dtype": "float32", "range": [0.0, 1.0]},
        "splits": splits,
    }
    write_manifest(tmp, manifest)
    return manifest
