"""The foundation: BVLC Caffe built by tools/install_caffe.sh, reachable from the venv.

Through the real Caffe: pycaffe trains a tiny net, the ``caffe`` tool trains a
tiny solver from the command line, and a second setup rebuilds nothing. The
install script's failure modes are checked without building anything.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "tools" / "install_caffe.sh"
PYTHON = sys.executable


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------- Caffe itself

@pytest.mark.caffe
def test_caffe_tool_version(caffe_tool):
    out = run([caffe_tool, "--version"])
    assert out.returncode == 0
    assert "caffe version 1.0.0" in out.stdout + out.stderr


@pytest.mark.caffe
def test_pycaffe_is_the_cached_build(caffe):
    # import caffe resolves to the cache build linked by a .pth file, not a stray copy.
    cache_build = Path(caffe.__file__).resolve().parents[4]
    assert (cache_build / ".ddsr-build-complete").is_file()
    assert (cache_build / ".ddsr-build-complete").read_text().strip() == cache_build.name


@pytest.mark.caffe
def test_extension_does_not_link_libpython(caffe):
    so = Path(caffe.__file__).with_name("_caffe.so")
    needed = run(["readelf", "-d", str(so)]).stdout
    assert "libboost_python" in needed
    assert "libpython" not in needed


TINY_NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 8 dim: 1 dim: 6 dim: 6 } shape { dim: 8 dim: 1 dim: 6 dim: 6 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 1 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "conv2" bottom: "label" top: "loss" }
"""


@pytest.mark.caffe
def test_pycaffe_trains_a_tiny_net(caffe, tmp_path):
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(TINY_NET)
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text(
        f'net: "{net_file}"\ntype: "Adam"\nbase_lr: 0.01\nmomentum: 0.9\nmomentum2: 0.999\n'
        'lr_policy: "fixed"\nmax_iter: 100\nrandom_seed: 1\nsnapshot_after_train: false\n'
    )
    solver = caffe.get_solver(str(solver_file))
    rng = np.random.default_rng(0)
    x = rng.random((8, 1, 6, 6), dtype=np.float32)
    y = 0.5 * x + 0.25  # a function the two-layer net can learn
    losses = []
    for _ in range(20):
        solver.net.blobs["data"].data[...] = x
        solver.net.blobs["label"].data[...] = y
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.caffe
def test_caffe_tool_trains_from_the_command_line(caffe_tool, tmp_path):
    import h5py

    rng = np.random.default_rng(1)
    x = rng.random((16, 1, 6, 6), dtype=np.float32)
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f["data"] = x
        f["label"] = 0.5 * x + 0.25
    (tmp_path / "train.txt").write_text(str(tmp_path / "train.h5") + "\n")
    net = TINY_NET.replace(
        'layer { name: "data" type: "Input" top: "data" top: "label"\n'
        '        input_param { shape { dim: 8 dim: 1 dim: 6 dim: 6 } shape { dim: 8 dim: 1 dim: 6 dim: 6 } } }',
        f'layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"\n'
        f'        hdf5_data_param {{ source: "{tmp_path / "train.txt"}" batch_size: 8 }} }}')
    assert "HDF5Data" in net
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}"\ntype: "Adam"\nbase_lr: 0.01\nmomentum: 0.9\n'
        'momentum2: 0.999\nlr_policy: "fixed"\nmax_iter: 30\ndisplay: 1\nrandom_seed: 1\n'
        f'snapshot_prefix: "{tmp_path / "tiny"}"\n'
    )
    # glog's INFO lines carry the losses; other modules quieten glog for the whole process.
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    out = run([caffe_tool, "train", "-solver", str(tmp_path / "solver.prototxt")], cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    import re

    losses = [float(v) for v in re.findall(r"Iteration \d+ .*?, loss = ([0-9.eE+-]+)", out.stderr)]
    assert len(losses) >= 20
    assert losses[-1] < 0.5 * losses[0]
    assert (tmp_path / "tiny_iter_30.caffemodel").is_file()


# ----------------------------------------------------------- the setup script

def test_install_script_help():
    out = run(["bash", str(INSTALL), "--help"])
    assert out.returncode == 0
    for option in ("--prefix", "--jobs", "--log", "--cuda", "--venv"):
        assert option in out.stdout


def test_install_script_rejects_unknown_option():
    out = run(["bash", str(INSTALL), "--frobnicate"])
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "install_caffe: unknown option '--frobnicate' (see --help)"]


def test_install_script_rejects_bad_jobs():
    out = run(["bash", str(INSTALL), "--jobs", "many"])
    assert out.returncode != 0
    assert "--jobs" in out.stderr


def _fake_python(tmp_path, version):
    """An executable that answers the script's interpreter query like Python `version`."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\necho {version} 2 /nonexistent/include /nonexistent/lib libpython.so\n")
    fake.chmod(0o755)
    return fake


def test_python_without_boost_python_is_named(tmp_path):
    if run(["sh", "-c", "command -v apt-get"]).returncode != 0:
        pytest.skip("no apt-get here")
    fake = _fake_python(tmp_path, "3.99")
    out = run(["bash", str(INSTALL), "--python", str(fake), "--prefix", str(tmp_path / "p"), "--no-apt"])
    assert out.returncode != 0
    assert "Python 3.99 has no matching Boost.Python" in out.stderr
    assert not (tmp_path / "p").exists()


def test_no_apt_explains_what_to_install(tmp_path):
    # A PATH with the basic tools but no apt-get or dpkg-query: a non-Debian system.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "dirname", "nproc", "realpath", "cat", "sed", "tr", "readlink", "grep", "ls",
                 "mkdir", "id"):
        path = run(["sh", "-c", f"command -v {tool}"]).stdout.strip()
        if path:
            (bindir / tool).symlink_to(path)
    fake = _fake_python(tmp_path, "3.11")
    out = run([str(bindir / "bash"), str(INSTALL), "--python", str(fake), "--prefix", str(tmp_path / "p")],
              env={"PATH": str(bindir), "HOME": str(tmp_path)})
    assert out.returncode != 0
    assert "has no apt-get" in out.stderr
    assert "Boost" in out.stderr and "protobuf" in out.stderr and "CAFFE_ROOT" in out.stderr
    assert not (tmp_path / "p").exists()


def _cached_source_present():
    cache = Path(os.environ.get("DDSR_CAFFE_CACHE") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ddsr-caffe")
    return any((cache / "src").glob("caffe_*.dsc"))


@pytest.mark.caffe
@pytest.mark.slow
def test_build_error_shows_log_tail_and_leaves_nothing(tmp_path):
    if not _cached_source_present():
        pytest.skip("the Caffe source is not in the cache (run make setup)")
    prefix = tmp_path / "prefix"
    log = tmp_path / "build.log"
    env = dict(os.environ, DDSR_CAFFE_CMAKE_EXTRA="-DCMAKE_CXX_COMPILER=/nonexistent/c++")
    out = run(["bash", str(INSTALL), "--python", PYTHON, "--prefix", str(prefix), "--log", str(log),
               "--no-apt"], env=env)
    assert out.returncode != 0
    assert "cmake configure failed" in out.stderr
    assert str(log) in out.stderr
    assert "/nonexistent/c++" in out.stderr  # the tail of the log is shown
    assert not prefix.exists()


@pytest.mark.caffe
def test_second_setup_rebuilds_nothing(caffe):
    """A second run of the install step finds the finished build and only relinks it."""
    prefix = Path(caffe.__file__).resolve().parents[4]
    stamp = prefix / ".ddsr-build-complete"
    before = stamp.stat().st_mtime_ns, (prefix / "lib").stat().st_mtime_ns
    venv = Path(PYTHON).parent.parent
    out = run(["bash", str(INSTALL), "--python", PYTHON, "--venv", str(venv), "--no-apt"])
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stderr
    assert "building" not in out.stderr
    assert (stamp.stat().st_mtime_ns, (prefix / "lib").stat().st_mtime_ns) == before


def test_caffe_root_is_used_instead_of_building(tmp_path):
    root = tmp_path / "caffe"
    (root / "python" / "caffe").mkdir(parents=True)
    (root / "python" / "caffe" / "_caffe.so").write_text("")
    (root / "build" / "tools").mkdir(parents=True)
    tool = root / "build" / "tools" / "caffe"
    tool.write_text("#!/bin/sh\necho caffe version 1.0.0\n")
    tool.chmod(0o755)
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    out = run(["bash", str(INSTALL), "--venv", str(venv)], env=dict(os.environ, CAFFE_ROOT=str(root)))
    assert out.returncode == 0, out.stderr
    assert (venv / "bin" / "caffe").resolve() == tool
    pth = list(venv.glob("lib/python*/site-packages/bvlc-caffe.pth"))
    assert pth and pth[0].read_text().strip() == str(root / "python")


def test_caffe_root_without_a_build_is_an_error(tmp_path):
    (tmp_path / "python" / "caffe").mkdir(parents=True)
    out = run(["bash", str(INSTALL)], env=dict(os.environ, CAFFE_ROOT=str(tmp_path)))
    assert out.returncode != 0
    assert "no built caffe tool" in out.stderr
