"""The image sets of the paper: the registry of their files and checking their sha256.

The registry (``datasets/registry.tsv`` in the repository) lists every file of
every set with its sha256, size, pixel size and the public repository, commit
and path it comes from. Fetching a set into ``<data_root>/<Set>/`` is
:mod:`ddsr.data.fetch`; this module reads the registry, verifies a set folder
against it, and lists a set's images in registry order.

File names come from the registry, which may only hold plain names (no ``/``,
``\\``, ``..`` or leading ``.``), so every file lands inside its set folder.
"""

import csv
import hashlib
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..paths import DEFAULT_DATA_ROOT, REPO_ROOT

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
    "verify_set",
    "image_paths",
    "IMAGE_EXTENSIONS",
    "list_set_images",
]

REGISTRY_PATH = REPO_ROOT / "datasets" / "registry.tsv"
RAW_BASE = "https://raw.githubusercontent.com"

# What each set is for in the paper; "optional" sets are not used by it.
ROLES = ("test", "train", "optional")

# What counts as an image in a set folder that is not in the registry (e.g. the demo's sets).
IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm", ".pnm")

REGISTRY_COLUMNS = (
    "set", "role", "filename", "sha256", "bytes", "width", "height",
    "source_repo", "source_commit", "source_path",
)

_CHUNK = 1 << 20
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class DatasetError(ValueError):
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


def _mismatch(entry, sha, size):
    """A FileProblem if (sha, size) is not what the registry says, else None."""
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


def image_paths(name, data_root=DEFAULT_DATA_ROOT, *, registry=None):
    """The files of a set under a data root, in registry order (sorted by name).

    Does not hash them (use :func:`verify_set` for that); checks only that the
    folder and every file exist.

    Raises
    ------
    ValueError
        Unknown set name.
    DatasetError
        The folder or a file is missing.
    """
    registry = load_registry() if registry is None else registry
    folder = Path(data_root) / name
    paths = [folder / f.filename for f in registry.files(name)]
    if not folder.is_dir():
        raise DatasetError(f"{name}: {folder} does not exist (fetch it with tools/fetch_datasets.py {name})")
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{name}: {len(missing)} file(s) missing in {folder}: {', '.join(missing)}")
    return paths


def list_set_images(data_root, set_name):
    """The image files of one set folder, sorted by name: the one way every stage lists a set.

    For a registry set this is the registry's order (its files are sorted by name). Whether the
    folder holds exactly the registry's files is :func:`verify_set`'s (or :func:`image_paths`')
    question, not this function's.

    Parameters
    ----------
    data_root : path-like
        Folder holding one folder per set (``data/`` by default).
    set_name : str

    Returns
    -------
    list of Path
        The files in ``data_root/set_name`` with an image extension (:data:`IMAGE_EXTENSIONS`).

    Raises
    ------
    DatasetError
        No such folder (the message lists the sets that are there), or no images in it.
    """
    root = Path(data_root)
    folder = root / set_name
    if not folder.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if root.is_dir() else []
        hint = f" (sets there: {', '.join(known)})" if known else f" ({data_root} has no set folders)"
        raise DatasetError(f"unknown set {set_name!r}: no folder {folder}{hint}; "
                           f"tools/fetch_datasets.py fetches the paper's sets")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"empty set {set_name!r}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files
