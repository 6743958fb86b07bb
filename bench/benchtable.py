"""What the benchmarks share: the machine's description, where the image sets are, and
writing one benchmark's section of ``docs/benchmarks.md``.

Each ``bench/<name>.py`` owns the text between ``<!-- bench:<name> -->`` and
``<!-- /bench:<name> -->``; :func:`write_section` replaces it (or appends the
section when absent) and leaves the rest of the file alone. The file is
replaced atomically (temporary file, then rename).
"""

import os
import platform
import re
from pathlib import Path

from ddsr.atomic import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO_ROOT / "docs" / "benchmarks.md"
_HEADER = ("# Benchmarks\n\n"
           "Each section is written by its script under `bench/`; do not edit by hand.\n")


def default_data_root():
    """The project's shared image sets when present ($DDSR_SHARED, ../shared), else data/."""
    for candidate in (os.environ.get("DDSR_SHARED"), REPO_ROOT.parent / "shared", "/work/shared"):
        if candidate and (Path(candidate) / "datasets" / "MANIFEST.tsv").is_file():
            return Path(candidate) / "datasets"
    return REPO_ROOT / "data"


def cpu_model():
    """The CPU's model name, for the tables (timings depend on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_section(name, markdown, path=BENCHMARKS_MD):
    """Put ``markdown`` between the markers of section ``name`` in ``path``.

    Parameters
    ----------
    name : str
        Section name, usually the script name (letters, digits, ``_``, ``-``).
    markdown : str
        The section's body.
    path : path-like
        The Markdown file (created with a short header if missing).
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"bad section name {name!r}")
    path = Path(path)
    text = path.read_text() if path.exists() else _HEADER
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(path, text)
