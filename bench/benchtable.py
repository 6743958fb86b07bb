"""Write one benchmark's section of ``docs/benchmarks.md``.

Each ``bench/<name>.py`` owns the text between ``<!-- bench:<name> -->`` and
``<!-- /bench:<name> -->``; :func:`write_section` replaces it (or appends the
section when absent) and leaves the rest of the file alone. The file is
replaced atomically (temporary file, then rename).
"""

import re
from pathlib import Path

from ddsr.atomic import write_text_atomic

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
_HEADER = ("# Benchmarks\n\n"
           "Each section is written by its script under `bench/`; do not edit by hand.\n")


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
