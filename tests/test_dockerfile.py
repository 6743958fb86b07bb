"""The Dockerfile, checked without Docker (no engine runs on the project's machines).

What can be checked here: the file parses into the instructions we expect; the
files it copies exist and are not kept out by .dockerignore; its RUN steps are
valid shell; the step that builds Caffe is the project's own `make setup CUDA=1`,
which the Makefile turns into tools/install_caffe.sh --cuda with options the
script accepts; the toolkit it installs is the CUDA major version that
tools/check_cuda_build.sh compiles against; and README.md documents the same
`docker build` / `docker run` commands as the Dockerfile's header. What cannot
be checked here (docs/cuda.md says so): that NVIDIA's package names resolve,
that the image builds, and that it trains on a GPU.
"""

import fnmatch
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
KNOWN_INSTRUCTIONS = {"FROM", "SHELL", "ARG", "ENV", "RUN", "WORKDIR", "COPY", "CMD", "LABEL"}


def instructions(text):
    """(INSTRUCTION, arguments) pairs of a Dockerfile: comments dropped, continuations joined."""
    result, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


@pytest.fixture(scope="module")
def steps():
    return instructions(DOCKERFILE.read_text())


def args_of(steps, keyword):
    return [args for kw, args in steps if kw == keyword]


def test_parser_joins_continuations_and_drops_comments():
    text = "# c\nFROM x\nRUN a \\\n    # inner comment\n    && b\nCOPY p q\n"
    assert instructions(text) == [("FROM", "x"), ("RUN", "a && b"), ("COPY", "p q")]


def test_only_known_instructions(steps):
    assert steps[0][0] == "FROM"
    assert {kw for kw, _ in steps} <= KNOWN_INSTRUCTIONS


def test_base_is_debian_12_with_nvidias_debian_12_repository(steps):
    # install_caffe.sh builds Debian's caffe source with Debian's package names;
    # the CUDA repository must be the one for the same release (bookworm = 12).
    assert args_of(steps, "FROM") == ["debian:bookworm"]
    runs = " ".join(args_of(steps, "RUN"))
    assert "developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/" in runs


def test_shell_is_bash_with_pipefail(steps):
    assert args_of(steps, "SHELL") == ['["/bin/bash", "-o", "pipefail", "-c"]']


def test_run_steps_are_valid_shell(steps):
    for command in args_of(steps, "RUN"):
        done = subprocess.run(["bash", "-n", "-o", "pipefail", "-c", command],
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr}"


def dockerignore_patterns():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def ignored(path):
    """Whether .dockerignore keeps `path` (relative, no leading /) out of the context."""
    verdict = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*") \
                or path.split("/")[0] == pattern:
            verdict = not negate
    return verdict


def test_copied_files_exist_and_reach_the_build_context(steps):
    copies = args_of(steps, "COPY")
    assert copies, "the project is copied in"
    for args in copies:
        *sources, _dest = shlex.split(args)
        for source in sources:
            if source == ".":
                continue
            assert (REPO / source).exists(), source
            assert not ignored(source.rstrip("/")), f"{source} is in .dockerignore"


def test_dockerignore_keeps_local_state_out():
    for path in (".venv", "data", "snapshots/ddsr_x3_iter_1000.caffemodel", ".git", "runs"):
        assert ignored(path), path
    for path in ("tools", "python", "Makefile", "snapshots/.gitkeep", "prototxt", "solvers"):
        assert not ignored(path), path


def test_caffe_is_built_by_make_setup_with_cuda(steps):
    runs = args_of(steps, "RUN")
    setup = [r for r in runs if r.startswith("make setup")]
    assert len(setup) == 1
    assert "CUDA=1" in setup[0].split()
    # Setup comes after the files it reads are copied in.
    order = [(kw, args) for kw, args in steps if kw in ("COPY", "RUN")]
    copied_before = " ".join(a for kw, a in order[:order.index(("RUN", setup[0]))] if kw == "COPY")
    # `pip install -e .` reads the files pyproject.toml names (the readme).
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    for needed in ("Makefile", "requirements.txt", "pyproject.toml", readme, "python/", "tools/"):
        assert needed in copied_before.split(), needed


def test_make_setup_cuda_runs_install_caffe_with_cuda():
    # make -n prints the recipes without running them.
    done = subprocess.run(["make", "-n", "-B", "caffe", "CUDA=1", "CUDA_ARCH=80 90", "JOBS=3"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = [ln for ln in done.stdout.splitlines() if "tools/install_caffe.sh" in ln]
    assert len(calls) == 1
    argv = shlex.split(calls[0].lstrip("@"))
    assert "--cuda" in argv
    assert argv[argv.index("--cuda-arch") + 1] == "80 90"
    assert argv[argv.index("--jobs") + 1] == "3"
    # ...and the script knows every option it is given.
    help_text = subprocess.run([str(REPO / "tools" / "install_caffe.sh"), "--help"],
                               capture_output=True, text=True).stdout
    for option in (a for a in argv if a.startswith("--")):
        assert re.search(rf"^\s+{option}\b", help_text, re.M), option


def test_cuda_home_is_the_toolkit_the_install_script_uses(steps):
    env = " ".join(args_of(steps, "ENV"))
    assert "CUDA_HOME=/usr/local/cuda-${CUDA}" in env  # NVIDIA's packages install there
    help_text = subprocess.run([str(REPO / "tools" / "install_caffe.sh"), "--help"],
                               capture_output=True, text=True).stdout
    assert "$CUDA_HOME" in help_text  # the script's default toolkit


def test_image_cuda_is_the_major_version_the_compile_check_builds_with(steps):
    cuda = [a for a in args_of(steps, "ARG") if a.startswith("CUDA=")]
    assert len(cuda) == 1
    major = cuda[0].split("=", 1)[1].split(".")[0]
    check = (REPO / "tools" / "check_cuda_build.sh").read_text()
    pinned_majors = set(re.findall(r"nvidia-nccl-cu(\d+)==", check))
    assert pinned_majors == {major}


def test_readme_documents_the_dockerfiles_usage():
    header = DOCKERFILE.read_text().split("\nFROM", 1)[0]
    usage = [ln.lstrip("# ").strip() for ln in header.splitlines() if ln.lstrip("# ").startswith("docker ")]
    assert any(u.startswith("docker build") for u in usage)
    assert any(u.startswith("docker run --gpus all") for u in usage)
    readme = (REPO / "README.md").read_text()
    for command in usage:
        assert command in readme, f"README.md lacks: {command}"
    run_target = usage[-1].split()[-1]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^{re.escape(run_target)}:", makefile, re.M), f"no make target {run_target}"
