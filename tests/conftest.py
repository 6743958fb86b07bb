"""Shared fixtures: where the repository, the shared image sets and Caffe are.

Tests that need ``../shared`` (the real image sets and the MATLAB oracle) or a
built Caffe are skipped when those are missing, unless ``DDSR_REQUIRE_SHARED=1``
or ``DDSR_REQUIRE_CAFFE=1`` (``.ci/run`` sets both) turns the skip into a failure.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _need(env_var, message):
    if os.environ.get(env_var) == "1":
        pytest.fail(message + f" ({env_var}=1)")
    pytest.skip(message)


def find_shared_dir():
    """The folder with the shared image sets, models and MATLAB reference values."""
    candidates = []
    if os.environ.get("DDSR_SHARED"):
        candidates.append(Path(os.environ["DDSR_SHARED"]))
    candidates += [REPO_ROOT.parent / "shared", Path("/work/shared")]
    for c in candidates:
        if (c / "datasets" / "MANIFEST.tsv").is_file():
            return c.resolve()
    return None


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir():
    found = find_shared_dir()
    if found is None:
        _need("DDSR_REQUIRE_SHARED", "shared data not found (set DDSR_SHARED)")
    return found


@pytest.fixture(scope="session")
def caffe():
    """pycaffe, in CPU mode."""
    try:
        import caffe as caffe_module
    except ImportError as exc:
        _need("DDSR_REQUIRE_CAFFE", f"pycaffe not importable: {exc}")
    caffe_module.set_mode_cpu()
    return caffe_module


@pytest.fixture(scope="session")
def caffe_tool():
    """Path of the ``caffe`` command-line tool (the venv's first)."""
    venv_tool = Path(sys.executable).parent / "caffe"
    tool = str(venv_tool) if venv_tool.exists() else shutil.which("caffe")
    if tool is None:
        _need("DDSR_REQUIRE_CAFFE", "the caffe tool is not on PATH")
    return tool
