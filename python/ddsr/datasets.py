"""The image sets of the paper: the registry, fetching them, checking their sha256.

The registry (``datasets/registry.tsv`` in the repository) lists every file of
every set with its sha256, size, pixel size and the public repository, commit
and path it comes from. A set is fetched into ``<data_root>/<Set>/`` from one
of three sources:

- its public repository at the pinned commit (the default), as raw file URLs
  ``<raw_base>/<source_repo>/<source_commit>/<source_path>`` with
  ``raw_base = https://raw.githubusercontent.com``;
- a mirror: a base URL under which ``<Set>/<filename>`` is served, the same
  layout as a data root (``python -m http.server`` run inside a data root, or a
  ``file://`` URL of one, is a mirror);
- a local folder holding ``<Set>/<filename>`` (e.g. ``../shared/datasets``).

Guarantees:

- Every file is checked against its sha256 in the registry. A mismatch or a
  missing file is a :class:`ChecksumError` that lists all such files.
- A set is assembled in a temporary folder ``<data_root>/.<Set>.partial-<pid>-*``
  (:func:`ddsr.atomic.replacing_directory`) and renamed to ``<data_root>/<Set>``
  only when every file is there and correct; on any error (Ctrl-C and SIGTERM
  included) the temporary folder is removed and the data root is left as it
  was. One left by a killed run is removed by the next fetch of that set
  (:func:`ddsr.atomic.remove_stale_temporaries`).
- A download never takes more than ``timeout`` seconds per attempt, however
  slowly the server sends, and never reads more than the size the registry
  records (a longer body is a wrong file).
- An existing ``<data_root>/<Set>`` that verifies (exactly the registry's
  files, all with the right sha256) is left alone, without any network access.
  One that does not verify (a file missing, changed, or a file that is not in
  the registry) is rebuilt: its correct files are reused, the others fetched,
  and the new folder takes its place; the old one is deleted only after that.
  ``<data_root>/<Set>/`` therefore belongs to this module: files added there by
  hand are removed on the next fetch.
- The sources are plain image files; nothing is ever unpacked, so there is no
  archive member that could escape the target folder. File names come from the
  registry, which may only hold plain names (no ``/``, ``\\``, ``..`` or leading
  ``.``), so every file lands inside its set folder.

Progress is reported through an optional callback, so that tools can draw a
progress bar (``tools/fetch_datasets.py`` uses tqdm); the library prints nothing.
"""

import csv
import hashlib
import http.client
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from . import __version__
from .atomic import replacing_directory

__all__ = [
    "REPO_ROOT",
    "REGISTRY_PATH",
    "DEFAULT_DATA_ROOT",
    "RAW_BASE",
    "ROLES",
    "DatasetFile",
    "Registry",
    "FileProblem",
    "FetchResult",
    "DatasetError",
    "ChecksumError",
    "DownloadError",
    "load_registry",
    "sha256_file",
    "download_file",
    "verify_set",
    "image_paths",
    "fetch_set",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTRY_PATH = REPO_ROOT / "datasets" / "registry.tsv"
DEFAULT_DATA_ROOT = REPO_ROOT / "data"
RAW_BASE = "https://raw.githubusercontent.com"

# What each set is for in the paper; "optional" sets are not used by it.
ROLES = ("test", "train", "optional")

REGISTRY_COLUMNS = (
    "set", "role", "filename", "sha256", "bytes", "width", "height",
    "source_repo", "source_commit", "source_path",
)

# HTTP statuses worth another try: the server or a proxy is busy, not the file absent.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_MISSING_STATUSES = frozenset({404, 410})
_CHUNK = 1 << 20
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class DatasetError(Exception):
    """A set could not be fetched, found or verified."""


class ChecksumError(DatasetError):
    """Files of a set are missing or differ from the registry.

    Attributes
    ----------
    set_name : str
    problems : tuple of FileProblem
        Every failing file, not only the first.
    """

    def __init__(self, set_name, problems, where):
        self.set_name = set_name
        self.problems = tuple(problems)
        listing = "; ".join(f"{p.filename} ({p.reason})" for p in self.problems)
        super().__init__(
            f"{set_name}: {len(self.problems)} file(s) missing or wrong in {where}: {listing}"
        )


class DownloadError(DatasetError):
    """A file could not be downloaded, even after the retries."""


class FileProblem(NamedTuple):
    """One file of a set that is missing, wrong, or not in the registry."""

    filename: str
    reason: str


class FetchResult(NamedTuple):
    """What :func:`fetch_set` did.

    ``action`` is ``"present"`` (an existing folder verified and left alone),
    ``"fetched"`` (a new folder) or ``"replaced"`` (an existing folder that did
    not verify was rebuilt; ``old_problems`` says what was wrong with it).
    """

    path: Path
    action: str
    old_problems: tuple = ()


@dataclass(frozen=True)
class DatasetFile:
    """One file of the registry: where it goes, what it must hash to, where it comes from."""

    set: str
    role: str
    filename: str
    sha256: str
    bytes: int
    width: int
    height: int
    source_repo: str
    source_commit: str
    source_path: str

    def raw_url(self, raw_base=RAW_BASE):
        """The file in its public repository at the pinned commit.

        ``<raw_base>/<source_repo>/<source_commit>/<source_path>``, the scheme of
        ``raw.githubusercontent.com``.
        """
        return "/".join([
            raw_base.rstrip("/"),
            self.source_repo,
            self.source_commit,
            urllib.parse.quote(self.source_path, safe="/"),
        ])

    def mirror_url(self, base):
        """The file under a mirror: ``<base>/<Set>/<filename>``."""
        return "/".join([
            base.rstrip("/"),
            urllib.parse.quote(self.set, safe=""),
            urllib.parse.quote(self.filename, safe=""),
        ])


class Registry:
    """The sets of the registry, in file order (test sets first, as the paper lists them)."""

    def __init__(self, files):
        sets = {}
        for f in files:
            sets.setdefault(f.set, []).append(f)
        self._sets = {name: tuple(entries) for name, entries in sets.items()}

    @property
    def names(self):
        """All set names, in registry order."""
        return tuple(self._sets)

    @property
    def paper_sets(self):
        """The sets the paper uses (role ``test`` or ``train``)."""
        return tuple(n for n in self._sets if self.role(n) != "optional")

    def role(self, name):
        """``"test"``, ``"train"`` or ``"optional"``."""
        return self.files(name)[0].role

    def files(self, name):
        """The registry entries of one set, sorted by file name.

        Raises
        ------
        ValueError
            Unknown set name (the message lists the known ones).
        """
        try:
            return self._sets[name]
        except KeyError:
            raise ValueError(
                f"unknown set {name!r}; known sets: {', '.join(self._sets)}"
            ) from None

    def total_bytes(self, name):
        return sum(f.bytes for f in self.files(name))


def _check_plain_name(name, what, line):
    if (not name or name in (".", "..") or name.startswith(".")
            or "/" in name or "\\" in name or "\x00" in name):
        raise ValueError(f"registry line {line}: {what} {name!r} is not a plain file name")


def load_registry(path=None):
    """Read and check the registry TSV.

    Parameters
    ----------
    path : path-like, optional
        Defaults to ``datasets/registry.tsv`` of the repository.

    Returns
    -------
    Registry

    Raises
    ------
    ValueError
        Wrong columns, a malformed sha256, size, commit or repository, an
        unknown role, a file name that is not a plain name, a duplicate file,
        or a set whose files disagree on the role.
    """
    path = Path(REGISTRY_PATH if path is None else path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None or tuple(header) != REGISTRY_COLUMNS:
            raise ValueError(f"{path}: expected columns {REGISTRY_COLUMNS}, got {header}")
        files = []
        seen = set()
        roles = {}
        for line, row in enumerate(reader, start=2):
            if len(row) != len(REGISTRY_COLUMNS):
                raise ValueError(f"{path} line {line}: expected {len(REGISTRY_COLUMNS)} fields, got {len(row)}")
            rec = dict(zip(REGISTRY_COLUMNS, row))
            if not _SET_NAME.match(rec["set"]):
                raise ValueError(f"{path} line {line}: bad set name {rec['set']!r}")
            if rec["role"] not in ROLES:
                raise ValueError(f"{path} line {line}: role {rec['role']!r} is not one of {ROLES}")
            if roles.setdefault(rec["set"], rec["role"]) != rec["role"]:
                raise ValueError(f"{path} line {line}: set {rec['set']} has two roles")
            _check_plain_name(rec["filename"], "file name", line)
            if not _SHA256.match(rec["sha256"]):
                raise ValueError(f"{path} line {line}: bad sha256 {rec['sha256']!r}")
            if not _COMMIT.match(rec["source_commit"]):
                raise ValueError(f"{path} line {line}: bad commit {rec['source_commit']!r}")
            if not _REPO.match(rec["source_repo"]):
                raise ValueError(f"{path} line {line}: bad repository {rec['source_repo']!r}")
            source_parts = rec["source_path"].split("/")
            if rec["source_path"].startswith("/") or any(p in ("", ".", "..") for p in source_parts):
                raise ValueError(f"{path} line {line}: bad source path {rec['source_path']!r}")
            try:
                sizes = [int(rec[k]) for k in ("bytes", "width", "height")]
            except ValueError:
                raise ValueError(f"{path} line {line}: bytes, width and height must be integers") from None
            if min(sizes) < 1:
                raise ValueError(f"{path} line {line}: bytes, width and height must be positive")
            key = (rec["set"], rec["filename"])
            if key in seen:
                raise ValueError(f"{path} line {line}: duplicate file {rec['set']}/{rec['filename']}")
            seen.add(key)
            rec["bytes"], rec["width"], rec["height"] = sizes
            files.append(DatasetFile(**rec))
    if not files:
        raise ValueError(f"{path}: the registry is empty")
    return Registry(files)


def sha256_file(path):
    """The sha256 of a file, as lowercase hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_hashing(src, dest, max_bytes=None, deadline=None):
    """Copy a binary stream into a new file; return (sha256 hex, bytes).

    Stops after ``max_bytes + 1`` bytes (the size returned then says the source
    is longer than ``max_bytes``), and raises ``TimeoutError`` once
    ``time.monotonic()`` passes ``deadline``. ``read1`` returns as soon as some
    bytes arrive, so a server sending one byte a second cannot hold a read
    past the deadline by more than the socket's own timeout.
    """
    read = getattr(src, "read1", src.read)
    digest = hashlib.sha256()
    size = 0
    with open(dest, "xb") as out:
        while True:
            want = _CHUNK if max_bytes is None else min(_CHUNK, max_bytes + 1 - size)
            if want <= 0:
                break
            chunk = read(want)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"only {size} bytes arrived in the time allowed")
    return digest.hexdigest(), size


def _mismatch(entry, sha, size):
    """A FileProblem if (sha, size) is not what the registry says, else None."""
    if size > entry.bytes:
        return FileProblem(entry.filename, f"longer than the registry's {entry.bytes} bytes")
    if sha == entry.sha256:
        return None
    return FileProblem(
        entry.filename,
        f"sha256 mismatch: got {sha[:12]}... ({size} bytes), "
        f"expected {entry.sha256[:12]}... ({entry.bytes} bytes)",
    )


def verify_set(name, data_root=DEFAULT_DATA_ROOT, *, registry=None):
    """Check ``<data_root>/<name>/`` against the registry.

    Parameters
    ----------
    name : str
        A set name of the registry.
    data_root : path-like
        The folder holding the set folders.
    registry : Registry, optional

    Returns
    -------
    list of FileProblem
        Empty when the folder holds exactly the registry's files, each with
        the right sha256. Otherwise one entry per missing file, per file with
        another sha256, and per entry that is not in the registry.

    Raises
    ------
    ValueError
        Unknown set name.
    DatasetError
        The set folder does not exist.
    """
    registry = load_registry() if registry is None else registry
    files = registry.files(name)
    folder = Path(data_root) / name
    if not folder.is_dir():
        raise DatasetError(f"{name}: {folder} does not exist (fetch it with tools/fetch_datasets.py {name})")
    problems = []
    for entry in files:
        path = folder / entry.filename
        if not path.is_file():
            problems.append(FileProblem(entry.filename, "missing"))
            continue
        bad = _mismatch(entry, sha256_file(path), path.stat().st_size)
        if bad:
            problems.append(bad)
    known = {f.filename for f in files}
    for extra in sorted(p.name for p in folder.iterdir() if p.name not in known):
        problems.append(FileProblem(extra, "not in the registry"))
    return problems


def image_paths(name, data_root=DEFAULT_DATA_ROOT, *, registry=None, check_sha256=False):
    """The files of a set under a data root, in registry order (sorted by name).

    Checks that the folder and every file exist; with ``check_sha256``, also
    that every file has the registry's sha256. Files in the folder that are
    not in the registry are not listed and not an error (use
    :func:`verify_set` for the whole folder).

    Raises
    ------
    ValueError
        Unknown set name.
    DatasetError
        The folder or a file is missing.
    ChecksumError
        With ``check_sha256``: files missing or with another sha256, all listed.
    """
    registry = load_registry() if registry is None else registry
    folder = Path(data_root) / name
    entries = registry.files(name)
    paths = [folder / f.filename for f in entries]
    if not folder.is_dir():
        raise DatasetError(f"{name}: {folder} does not exist (fetch it with tools/fetch_datasets.py {name})")
    if check_sha256:
        problems = []
        for entry, path in zip(entries, paths):
            if not path.is_file():
                problems.append(FileProblem(entry.filename, "missing"))
            else:
                bad = _mismatch(entry, sha256_file(path), path.stat().st_size)
                if bad:
                    problems.append(bad)
        if problems:
            raise ChecksumError(name, problems, folder)
        return paths
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{name}: {len(missing)} file(s) missing in {folder}: {', '.join(missing)}")
    return paths


def _check_url(url, what):
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"{what} must be an http://, https:// or file:// URL, got {url!r}")


def download_file(url, dest, *, timeout, retries, backoff, max_bytes=None):
    """Download ``url`` into ``dest``; (sha256, bytes), or None if the server says it is absent.

    Each attempt has ``timeout`` seconds in all (connecting and the whole
    body), and reads at most ``max_bytes + 1`` bytes (a returned size above
    ``max_bytes`` says the body is longer). Retries transport errors, timeouts
    and the statuses in ``_RETRY_STATUSES`` with exponential backoff; raises
    DownloadError when they persist or for any other HTTP status.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"ddsr-caffe/{__version__}"})
    last_error = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        deadline = time.monotonic() + timeout
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _copy_hashing(response, dest, max_bytes, deadline)
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
        except TimeoutError as exc:
            last_error = f"not complete within --timeout {timeout:g} s ({exc})"
        except (ConnectionError, http.client.HTTPException) as exc:
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
        Seconds allowed for each attempt at a file, connecting and the whole
        body together (a server that trickles is given up on, then retried).
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
    KeyboardInterrupt
        Ctrl-C (or :class:`ddsr.atomic.Interrupted`): nothing written either.
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

    with replacing_directory(target, sync=False, kind="partial") as partial:
        problems = []
        for entry in files:
            dest = partial / entry.filename
            if entry.filename in reusable:
                with open(reusable[entry.filename], "rb") as src:
                    got = _copy_hashing(src, dest, entry.bytes)
            elif from_dir is not None:
                src_path = source_folder / entry.filename
                if src_path.is_file():
                    with open(src_path, "rb") as src:
                        got = _copy_hashing(src, dest, entry.bytes)
                else:
                    got = None
            else:
                url = entry.mirror_url(mirror) if mirror is not None else entry.raw_url(raw_base)
                try:
                    got = download_file(url, dest, timeout=timeout, retries=retries,
                                        backoff=backoff, max_bytes=entry.bytes)
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
