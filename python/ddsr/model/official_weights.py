"""The official SRCNN and FSRCNN weights the authors released: where they are, fetched and verified.

Each released ``.mat`` file is pinned by the public repository, commit and path it is published
at, with its size and sha256; :func:`fetch_weights` gets a verified copy (from a local folder,
the cache, or a download through :mod:`ddsr.data.fetch`'s downloader). Converting them to Caffe
is :mod:`ddsr.model.official`.
"""

import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..atomic import replacing
from ..data.fetch import download_file
from ..data.registry import RAW_BASE, DownloadError, sha256_file
from ..paths import REPO_ROOT

__all__ = ["OfficialWeights", "OFFICIAL_WEIGHTS", "MODEL_NAMES", "DEFAULT_CACHE", "get_weights",
           "verify_file", "fetch_weights"]

# Where downloaded .mat files are kept (git-ignored, beside the converted models).
DEFAULT_CACHE = REPO_ROOT / "models" / "official"


@dataclass(frozen=True)
class OfficialWeights:
    """One released weight file and where it is published.

    Attributes
    ----------
    name : str
        Model name used for the output files, e.g. ``"srcnn_x3"``.
    family : str
        ``"srcnn"`` (9-1-5, fed the bicubic image) or ``"fsrcnn"`` (fed the LR image).
    scale : int
        Upscaling factor the weights were trained for.
    folder, file : str
        Location inside a local copy of the weights (``shared/models/<folder>/<file>``).
    sha256 : str
        Checksum of the exact released bytes.
    size : int
        File size in bytes.
    repo, commit, path : str
        Public GitHub repository (a mirror of the authors' package), pinned commit
        and the file's path in it.
    """

    name: str
    family: str
    scale: int
    folder: str
    file: str
    sha256: str
    size: int
    repo: str
    commit: str
    path: str

    def url(self, raw_base=RAW_BASE):
        """Raw download URL at the pinned commit: ``<raw_base>/<repo>/<commit>/<path>``."""
        quoted = urllib.parse.quote(self.path, safe="/")
        return f"{raw_base.rstrip('/')}/{self.repo}/{self.commit}/{quoted}"

    @property
    def relpath(self):
        """``<folder>/<file>``: the file's place in a local copy of the weights."""
        return f"{self.folder}/{self.file}"

_SRCNN_REPO = ("WangDequan/SRCNN", "85679e2ef74e058a1f1e79fe6ba349e93f1ee8ea", "model/9-1-5(91 images)")


_FSRCNN_REPO = ("yaBorn/Super-resolution", "74efc0394f0a07b615d6a25be412cf4ffc72169a",
                "Algorithm/FSRCNN/FSRCNN_test/model/FSRCNN")



def _entry(family, scale, sha256, size):
    folder, (repo, commit, base) = (("SRCNN-9-1-5-91images", _SRCNN_REPO) if family == "srcnn"
                                    else ("FSRCNN", _FSRCNN_REPO))
    file = f"x{scale}.mat"
    return OfficialWeights(f"{family}_x{scale}", family, scale, folder, file, sha256, size,
                           repo, commit, f"{base}/{file}")


# sha256 and sizes from shared/models/MANIFEST.tsv (tests check the two agree).
OFFICIAL_WEIGHTS = OrderedDict((w.name, w) for w in [
    _entry("srcnn", 2, "51b748297e8669832a4ad27cc4b7eebc6d65d37a77bcb19bef23c1b5f972ea12", 38625),
    _entry("srcnn", 3, "ef05325a96221ab9399db844bc833f687796a1078bfa6aacc6930bde60ca5b10", 38483),
    _entry("srcnn", 4, "717c2c6f5196a95959f98953f84a359e56fc415eba190b5db016b25896e74862", 38489),
    _entry("fsrcnn", 2, "1d00d037c4eae56d898e1a1e62b736eb11bb2ec112b2fd29d7ead0bff5e4e8b5", 59462),
    _entry("fsrcnn", 3, "9cbd62ce9cb8d0236d21c7b1311b1ee7f53ff227fd4a5ea62ddaf347870a80a0", 59400),
    _entry("fsrcnn", 4, "af005f2ba6e90ef45f1807045c3f78132e15b57d9056e4691c79e34863dbdd4f", 59338),
])


MODEL_NAMES = tuple(OFFICIAL_WEIGHTS)


def get_weights(name):
    """The registry entry of a model name (``srcnn_x2`` ... ``fsrcnn_x4``)."""
    try:
        return OFFICIAL_WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown official model {name!r}; known: {', '.join(MODEL_NAMES)}") from None


def verify_file(path, sha256, size=None):
    """Raise ``ValueError`` unless the file has the expected size and sha256."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if size is not None and path.stat().st_size != size:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {size}")
    actual = sha256_file(path)
    if actual != sha256:
        raise ValueError(f"{path}: sha256 {actual}, expected {sha256}")


def _download_verified(url, dest, sha256, size, timeout=30.0, retries=3):
    """Download ``url`` to ``dest`` (atomically), keeping it only if its sha256 matches.

    The transfer itself (retries, backoff, hashing while copying) is
    :mod:`ddsr.data.registry`' downloader, shared with the image sets.
    """
    with replacing(dest, suffix=".part") as tmp:
        tmp.unlink()  # the downloader creates the file exclusively
        got = download_file(url, tmp, timeout=timeout, retries=retries, backoff=1.0)
        if got is None:
            raise DownloadError(f"{url}: not found (HTTP 404)")
        if got[0] != sha256 or (size is not None and got[1] != size):
            raise ValueError(f"{url}: sha256 {got[0]} ({got[1]} bytes), expected {sha256} ({size} bytes)")
    return dest


def fetch_weights(name, cache_dir=None, source_dir=None, raw_base=RAW_BASE):
    """The verified ``.mat`` file of an official model, fetched if needed.

    Parameters
    ----------
    name : str
        Model name, e.g. ``"fsrcnn_x3"``.
    cache_dir : path-like, optional
        Where downloads go, as ``<cache_dir>/<folder>/<file>``; a verified file
        already there is reused. Default :data:`DEFAULT_CACHE` (``models/official``).
    source_dir : path-like, optional
        A local copy laid out as ``<source_dir>/<folder>/<file>`` (e.g.
        ``shared/models``): read from there, nothing is downloaded.
    raw_base : str
        Base of the download URLs (:meth:`OfficialWeights.url`); tests point it
        at a ``file://`` folder.

    Returns
    -------
    Path
        A file whose sha256 matches the registry.

    Raises
    ------
    ValueError
        Unknown name, a missing file in ``source_dir``, or a checksum mismatch.
    ddsr.data.registry.DownloadError
        The download failed (network, HTTP error, file absent at the source).
    """
    entry = get_weights(name)
    if source_dir is not None:
        path = Path(source_dir) / entry.relpath
        verify_file(path, entry.sha256, entry.size)
        return path
    path = Path(DEFAULT_CACHE if cache_dir is None else cache_dir) / entry.relpath
    if path.is_file():
        try:
            verify_file(path, entry.sha256, entry.size)
            return path
        except ValueError:
            pass  # a stale or partial file: download again
    return _download_verified(entry.url(raw_base), path, entry.sha256, entry.size)
