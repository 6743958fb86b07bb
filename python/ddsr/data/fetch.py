"""Fetching the image sets: from their public repositories, a mirror or a local folder.

Every file is checked against its sha256 in the registry (:mod:`ddsr.data.registry`). A set
is assembled in a temporary folder beside its final one (:func:`ddsr.atomic.replacing_directory`)
and moved into place only when every file is there and correct; on any error (or Ctrl-C) the
temporary folder is removed and the data root is left as it was. An existing set folder that
verifies is left alone, without any network access; one that does not is rebuilt, its correct
files reused.
"""

import hashlib
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from .. import __version__
from ..atomic import replacing_directory
from ..paths import DEFAULT_DATA_ROOT
from .registry import (RAW_BASE, ChecksumError, DatasetError, DatasetFile, DownloadError, FetchResult,
                       FileProblem, _mismatch, load_registry, verify_set)

__all__ = ["download_file", "fetch_set"]

# HTTP statuses worth another try: the server or a proxy is busy, not the file absent.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


_MISSING_STATUSES = frozenset({404, 410})


_CHUNK = 1 << 20


def _copy_hashing(src, dest):
    """Copy a binary stream into a new file; return (sha256 hex, bytes)."""
    digest = hashlib.sha256()
    size = 0
    with open(dest, "xb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _check_url(url, what):
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"{what} must be an http://, https:// or file:// URL, got {url!r}")


def download_file(url, dest, *, timeout, retries, backoff):
    """Download ``url`` into ``dest``; (sha256, bytes), or None if the server says it is absent.

    Retries transport errors, timeouts and the statuses in ``_RETRY_STATUSES``
    with exponential backoff; raises DownloadError when they persist or for any
    other HTTP status.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"ddsr-caffe/{__version__}"})
    last_error = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _copy_hashing(response, dest)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in _MISSING_STATUSES:
                return None
            if exc.code not in _RETRY_STATUSES:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            last_error = f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError):  # a file:// URL
                return None
            last_error = str(exc.reason)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        # Drop a partial file before the next attempt.
        Path(dest).unlink(missing_ok=True)
    raise DownloadError(f"{url}: {last_error} (gave up after {retries + 1} attempts)")


def fetch_set(name, data_root=DEFAULT_DATA_ROOT, *, from_dir=None, mirror=None,
              raw_base=RAW_BASE, timeout=30.0, retries=3, backoff=1.0,
              progress: Optional[Callable[[DatasetFile], None]] = None, registry=None):
    """Fetch one set into ``<data_root>/<name>/``, every file checked against its sha256.

    Parameters
    ----------
    name : str
        A set name of the registry (``Set5``, ``Set14``, ``BSD200``, ``T91``,
        ``General-100``, ``BSD100``, ``BSD200-train``).
    data_root : path-like
        Where set folders go (created if needed). Default: ``data/`` in the repository.
    from_dir : path-like, optional
        Copy from a local folder holding ``<name>/<filename>`` (e.g. ``../shared/datasets``).
    mirror : str, optional
        Download from ``<mirror>/<name>/<filename>`` (http, https or file URL).
    raw_base : str
        Base of the raw-file URLs when neither ``from_dir`` nor ``mirror`` is
        given: ``<raw_base>/<repo>/<commit>/<path>`` (tests point it at a local server).
    timeout : float
        Seconds for connecting and for each read.
    retries : int
        Extra attempts after a transport error, a timeout or HTTP 408/425/429/5xx,
        waiting ``backoff * 2**k`` seconds before the k-th retry.
    backoff : float
    progress : callable, optional
        Called with each :class:`DatasetFile` once it has been handled.
    registry : Registry, optional

    Returns
    -------
    FetchResult
        The set folder and whether it was ``"present"``, ``"fetched"`` or ``"replaced"``.

    Raises
    ------
    ValueError
        Unknown set, both ``from_dir`` and ``mirror``, a bad URL or a bad number.
    ChecksumError
        Files missing at the source or with another sha256; all of them are listed.
        Nothing is written: no set folder, no temporary folder, and an existing
        set folder is left as it was.
    DownloadError
        A file could not be downloaded after the retries (nothing written either).
    DatasetError
        ``from_dir`` has no folder for the set; the target is not a folder.
    """
    registry = load_registry() if registry is None else registry
    files = registry.files(name)
    if from_dir is not None and mirror is not None:
        raise ValueError("give at most one of from_dir and mirror")
    if timeout <= 0 or retries < 0 or backoff < 0:
        raise ValueError("timeout must be > 0, retries and backoff >= 0")
    if mirror is not None:
        _check_url(mirror, "mirror")
        where = f"mirror {mirror}"
    elif from_dir is not None:
        source_folder = Path(from_dir) / name
        if not source_folder.is_dir():
            raise DatasetError(f"{name}: {source_folder} does not exist")
        where = str(source_folder)
    else:
        _check_url(raw_base, "raw_base")
        where = "the source repositories"

    data_root = Path(data_root)
    target = data_root / name
    reusable = {}
    replaced = ()
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise DatasetError(f"{name}: {target} exists and is not a folder")
        replaced = tuple(verify_set(name, data_root, registry=registry))
        if not replaced:
            return FetchResult(target, "present")
        bad = {p.filename for p in replaced}
        reusable = {f.filename: target / f.filename for f in files if f.filename not in bad}

    data_root.mkdir(parents=True, exist_ok=True)
    # The old folder stays readable (its good files are reused) until the new one is complete.
    with replacing_directory(target, sync=False) as partial:
        problems = []
        for entry in files:
            dest = partial / entry.filename
            if entry.filename in reusable:
                with open(reusable[entry.filename], "rb") as src:
                    got = _copy_hashing(src, dest)
            elif from_dir is not None:
                src_path = source_folder / entry.filename
                if src_path.is_file():
                    with open(src_path, "rb") as src:
                        got = _copy_hashing(src, dest)
                else:
                    got = None
            else:
                url = entry.mirror_url(mirror) if mirror is not None else entry.raw_url(raw_base)
                try:
                    got = download_file(url, dest, timeout=timeout, retries=retries, backoff=backoff)
                except DownloadError as exc:
                    raise DownloadError(f"{name}/{entry.filename}: {exc}") from exc
            if got is None:
                problems.append(FileProblem(entry.filename, "missing"))
            else:
                bad = _mismatch(entry, *got)
                if bad:
                    problems.append(bad)
                    dest.unlink()
            if progress is not None:
                progress(entry)
        if problems:
            raise ChecksumError(name, problems, where)
    return FetchResult(target, "replaced" if replaced else "fetched", replaced)
