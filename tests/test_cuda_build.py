"""The CUDA options of tools/install_caffe.sh and tools/check_cuda_build.sh, without compiling.

A stand-in ``nvcc`` that answers ``--version`` and ``--list-gpu-arch`` like
CUDA 13.0 (whose oldest architecture is sm_75, as NVIDIA's release notes and the
real nvcc 13.0 here say) or CUDA 12.9 (oldest sm_50) lets ``--print-prefix``
show which architectures a build would be made for: the cache key names them.
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
    (root / "bin").mkdir(parents=True)
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
    return name.split("-r")[1].split("-py")[0]  # caffe-<version>-r<recipe>-<variant>-py...


@pytest.mark.parametrize("release, expected", [
    ("13.0", "cuda13.0-sm75_80_86_90"),   # sm_70 dropped by CUDA 13: its oldest, sm_75, instead
    ("12.9", "cuda12.9-sm70_80_86_90"),   # the default list as it is
    ("10.2", "cuda10.2-sm70_80_86_90"),   # a toolkit that cannot list its archs: left as asked
])
def test_default_architectures_follow_the_toolkit(tmp_path, release, expected):
    assert variant(prefix(tmp_path, release)).endswith(expected)


def test_cpu_and_cuda_builds_have_different_cache_folders(tmp_path):
    cuda = prefix(tmp_path, "13.0").stdout.strip()
    cpu = subprocess.run([str(INSTALL), "--python", sys.executable, "--print-prefix"],
                         capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "DDSR_CAFFE_CACHE": str(tmp_path / "cache")})
    assert cpu.returncode == 0, cpu.stderr
    assert Path(cpu.stdout.strip()).parent == Path(cuda).parent
    assert "-cpu-" in Path(cpu.stdout.strip()).name and "-cpu-" not in Path(cuda).name


def test_explicit_architectures_are_sorted_and_deduplicated(tmp_path):
    assert variant(prefix(tmp_path, "13.0", "--cuda-arch", "90  80 90")).endswith("-sm80_90")


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
