"""Where the repository is, and paths relative to it.

Caffe runs from the repository root (the generated solvers and nets name their files relative
to it), so the tools resolve every path they hand to Caffe from here.
"""

from pathlib import Path

__all__ = ["REPO_ROOT", "DEFAULT_DATA_ROOT", "relative_path"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO_ROOT / "data"


def relative_path(path, workdir=REPO_ROOT):
    """``path`` relative to ``workdir`` when it is inside it (as Caffe, run there, needs it), else as given."""
    try:
        return Path(path).resolve().relative_to(Path(workdir).resolve())
    except ValueError:
        return Path(path)
