# Sourced by install_caffe.sh and check_cuda_build.sh: where the CUDA toolkit is.

# toolkit_of_nvcc NVCC: the toolkit folder that holds this nvcc. nvcc names its own folder
# in its --dryrun output (_HERE_): PATH may hold a wrapper script, or a symlink from
# /usr/bin, instead of the real nvcc.
toolkit_of_nvcc() {
  local here
  here="$("$1" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n1)"
  dirname "${here:-$(dirname "$(readlink -f "$1")")}"
}

# locate_cuda_toolkit: sets CUDA_ROOT (as given, else the toolkit of the nvcc on PATH) and
# CUDA_VER (nvcc's release, e.g. 13.0). On failure returns 1 with the reason in CUDA_PROBLEM.
locate_cuda_toolkit() {
  if [ -z "$CUDA_ROOT" ]; then
    local nvcc_path
    nvcc_path="$(command -v nvcc || true)"
    if [ -z "$nvcc_path" ]; then
      CUDA_PROBLEM="no nvcc on PATH: install a CUDA toolkit, or pass --cuda-root DIR (or set CUDA_HOME)"
      return 1
    fi
    CUDA_ROOT="$(toolkit_of_nvcc "$nvcc_path")"
  fi
  if [ ! -x "$CUDA_ROOT/bin/nvcc" ]; then
    CUDA_PROBLEM="$CUDA_ROOT/bin/nvcc not found"
    return 1
  fi
  CUDA_VER="$("$CUDA_ROOT/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
}
