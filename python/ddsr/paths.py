"""Where the repository is, and paths relative to it.

Caffe runs from the repository root (the generated solvers and nets name their files relative
to it), so the tools resolve every path they hand to Caffe from here.
"""

from pathlib import Path

__all__ = ["REPO_ROOT", "DEFAULT_DATA_ROOT", "relative_path", "run_dir", "train_log_path"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO_ROOT / "data"


def relative_path(path, workdir=REPO_ROOT):
    """``path`` relative to ``workdir`` when it is inside it (as Caffe, run there, needs it), else as given."""
    try:
        return Path(path).resolve().relative_to(Path(workdir).resolve())
    except ValueError:
        return Path(path)


def run_dir(name, root=REPO_ROOT):
    """``runs/<name>`` under the repository (or ``root``): a training run's log and what is made from it."""
    return Path(root) / "runs" / name


def train_log_path(name, root=REPO_ROOT):
    """``runs/<name>/train.log``: Caffe's whole output for the run ``name`` (all its resumes)."""
    return run_dir(name, root) / "train.log"
