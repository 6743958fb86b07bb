"""The CUDA options of tools/install_caffe.sh and tools/check_cuda_build.sh, without compiling.

A stand-in ``nvcc`` that answers ``--version`` and ``--list-gpu-arch`` like
CUDA 13.0 (whose oldest architecture is sm_75, as NVIDIA's release notes and the
real nvcc 13.0 here say) or CUDA 12.9 (oldest sm_50) lets ``--print-prefix``
show which architectures a build would be made for, and stand-in cuDNN folders
(a ``cudnn_version.h`` and a ``libcudnn.so.9``, laid out as NVIDIA's pip wheel
``nvidia-cudnn-cu13`` is) whether cuDNN would be used: the cache key names both.
The compile and link themselves are checked by ``make check-cuda``
(tools/check_cuda_build.sh; its output is in docs/cuda.md).
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "tools" / "install_caffe.sh"
CHECK = REPO / "tools" / "check_cuda_build.sh"

# What `nvcc --list-gpu-arch` prints for each release.
ARCHS = {
    "13.0": [75, 80, 86, 87, 88, 89, 90, 100, 110, 103, 120, 121],
    "12.9": [50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 103, 120, 121],
    "10.2": None,  # no --list-gpu-arch before CUDA 11
}


def fake_toolkit(root, release):
    (root / "bin").mkdir(parents=True, exist_ok=True)
    listing = "".join(f"compute_{a}\\n" for a in ARCHS[release]) if ARCHS[release] else ""
    list_arch = f"printf '{listing}'" if listing else "echo 'nvcc fatal: unknown option' >&2; exit 1"
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  --version) echo 'Cuda compilation tools, release {release}, V{release}.1' ;;\n"
        f"  --list-gpu-arch) {list_arch} ;;\n"
        "  *) exit 1 ;;\n"
        "esac\n")
    nvcc.chmod(0o755)
    return root


def prefix(tmp_path, release, *options):
    root = fake_toolkit(tmp_path / f"cuda-{release}", release)
    return subprocess.run(
        [str(INSTALL), "--python", sys.executable, "--cuda", "--cuda-root", str(root),
         "--print-prefix", *options],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                             "DDSR_CAFFE_CACHE": str(tmp_path / "cache")})


def variant(done):
    assert done.returncode == 0, done.stderr
    name = Path(done.stdout.strip()).name
    return name.split("-r", 1)[1].split("-", 1)[1].split("-py")[0]  # caffe-<version>-r<recipe>-<variant>-py...


def fake_cudnn(root, major=9, minor=13, patch=0, version_header=True):
    """A cuDNN folder as NVIDIA's wheels lay it out: include/cudnn_version.h, lib/libcudnn.so.N
    (cuDNN 7 and older: the version in cudnn.h)."""
    (root / "include").mkdir(parents=True)
    (root / "lib").mkdir()
    header = "cudnn_version.h" if version_header else "cudnn.h"
    (root / "include" / header).write_text(
        f"#define CUDNN_MAJOR {major}\n#define CUDNN_MINOR {minor}\n#define CUDNN_PATCHLEVEL {patch}\n")
    (root / "lib" / f"libcudnn.so.{major}").write_text("")
    return root


def system_has_cudnn():
    return any(Path(d, "cudnn_version.h").exists() for d in ("/usr/include", "/usr/include/x86_64-linux-gnu"))


@pytest.mark.parametrize("release, expected", [
    ("13.0", "cuda13.0-sm75_80_86_90"),   # sm_70 dropped by CUDA 13: its oldest, sm_75, instead
    ("12.9", "cuda12.9-sm70_80_86_90"),   # the default list as it is
    ("10.2", "cuda10.2-sm70_80_86_90"),   # a toolkit that cannot list its archs: left as asked
])
def test_default_architectures_follow_the_toolkit(tmp_path, release, expected):
    assert variant(prefix(tmp_path, release, "--no-cudnn")) == expected + "-nocudnn"


def test_cpu_and_cuda_builds_have_different_cache_folders(tmp_path):
    cuda = prefix(tmp_path, "13.0").stdout.strip()
    cpu = subprocess.run([str(INSTALL), "--python", sys.executable, "--print-prefix"],
                         capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "DDSR_CAFFE_CACHE": str(tmp_path / "cache")})
    assert cpu.returncode == 0, cpu.stderr
    assert Path(cpu.stdout.strip()).parent == Path(cuda).parent
    assert "-cpu-" in Path(cpu.stdout.strip()).name and "-cpu-" not in Path(cuda).name


def test_explicit_architectures_are_sorted_and_deduplicated(tmp_path):
    assert variant(prefix(tmp_path, "13.0", "--cuda-arch", "90  80 90", "--no-cudnn")).endswith("-sm80_90-nocudnn")


def test_an_architecture_the_toolkit_cannot_build_is_an_error(tmp_path):
    done = prefix(tmp_path, "13.0", "--cuda-arch", "70 90")
    assert done.returncode != 0
    assert "sm_70" in done.stderr and "75" in done.stderr


def test_malformed_architecture_list_is_an_error(tmp_path):
    done = prefix(tmp_path, "13.0", "--cuda-arch", "sm_90")
    assert done.returncode != 0
    assert "--cuda-arch" in done.stderr


def test_build_dir_needs_compile_only(tmp_path):
    done = subprocess.run([str(INSTALL), "--build-dir", str(tmp_path / "b")],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "--compile-only" in done.stderr


def test_check_script_help_names_its_pins():
    done = subprocess.run([str(CHECK), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for pin in ("nvidia-cublas==", "nvidia-curand==", "nvidia-nccl-cu13==", "nvidia-cuda-cuobjdump=="):
        assert pin in done.stdout


def test_check_script_without_nvcc_says_so(tmp_path):
    done = subprocess.run([str(CHECK)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode != 0
    assert "no nvcc" in done.stderr


def test_cudnn_8_or_newer_is_used_and_named_in_the_cache_key(tmp_path):
    cudnn = fake_cudnn(tmp_path / "wheels" / "nvidia" / "cudnn")
    done = prefix(tmp_path, "13.0", "--cuda-arch", "90", "--cuda-libs", str(cudnn))
    assert variant(done) == "cuda13.0-sm90-cudnn9.13"
    off = prefix(tmp_path, "13.0", "--cuda-arch", "90", "--cuda-libs", str(cudnn), "--no-cudnn")
    assert variant(off) == "cuda13.0-sm90-nocudnn"
    assert Path(done.stdout.strip()).parent == Path(off.stdout.strip()).parent


def test_a_cudnn_older_than_8_is_not_used(tmp_path):
    old = fake_cudnn(tmp_path / "cudnn7", major=7, minor=6, patch=5, version_header=False)
    required = prefix(tmp_path, "13.0", "--cuda-arch", "90", "--cuda-libs", str(old), "--cudnn")
    assert required.returncode != 0
    assert "cuDNN 7" in required.stderr and "older than 8" in required.stderr
    if not system_has_cudnn():
        assert variant(prefix(tmp_path, "13.0", "--cuda-arch", "90", "--cuda-libs", str(old))).endswith("-nocudnn")


@pytest.mark.skipif(system_has_cudnn(), reason="this machine has a cuDNN in /usr")
def test_cudnn_required_but_missing_is_an_error(tmp_path):
    done = prefix(tmp_path, "13.0", "--cuda-arch", "90", "--cudnn")
    assert done.returncode != 0
    assert "--cudnn: no cuDNN" in done.stderr


def test_cudnn_options_need_cuda(tmp_path):
    done = subprocess.run([str(INSTALL), "--python", sys.executable, "--no-cudnn", "--print-prefix"],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "go with --cuda" in done.stderr


def test_check_script_pins_the_cudnn_wheel_and_the_symbols_it_checks():
    done = subprocess.run([str(CHECK), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "nvidia-cudnn-cu13==9." in done.stdout
    for symbol in ("cudnnGetConvolutionForwardAlgorithm_v7", "cudnnGetConvolutionBackwardFilterAlgorithm_v7",
                   "cudnnGetConvolutionBackwardDataAlgorithm_v7", "cudnnSetConvolutionMathType"):
        assert symbol in done.stdout


def test_ci_runs_the_cudnn_variant_of_the_check(repo_root=REPO):
    ci = (repo_root / ".ci" / "run").read_text()
    check = [line for line in ci.splitlines() if "check-cuda" in line and not line.lstrip().startswith("#")]
    assert check and all("CUDNN=0" not in line for line in check)
