# Sourced by install_caffe.sh and check_cuda_build.sh: where the CUDA toolkit and cuDNN are.

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

# locate_cudnn MULTIARCH DIR...: a cuDNN >= 8 in one of the DIRs (each a folder with include/ and
# lib/ or lib64/: a toolkit, a pip wheel's nvidia/cudnn) or in the system's /usr. Sets
# CUDNN_HEADER (its cudnn_version.h), CUDNN_LIBRARY (libcudnn.so, else libcudnn.so.MAJOR: the
# pip wheels ship only that) and CUDNN_VER (e.g. 9.13.0). On failure returns 1 with the reason
# in CUDNN_PROBLEM. cuDNN 8 moved the version macros from cudnn.h to cudnn_version.h, so an
# older cuDNN has only cudnn.h.
locate_cudnn() {
  local multiarch="$1" d inc header lib major minor patch
  shift
  CUDNN_PROBLEM="no cuDNN (cudnn_version.h and libcudnn.so) in $* or /usr"
  for d in "$@" /usr; do
    for inc in "$d/include" "$d/include/$multiarch"; do
      header="$inc/cudnn_version.h"
      if [ ! -f "$header" ]; then
        major="$(sed -n 's/^#define CUDNN_MAJOR[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p' "$inc/cudnn.h" 2>/dev/null | head -n1)"
        [ -z "$major" ] || CUDNN_PROBLEM="cuDNN $major at $inc/cudnn.h is older than 8 (the patched Caffe uses the cuDNN 8/9 API)"
        continue
      fi
      major="$(sed -n 's/^#define CUDNN_MAJOR[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p' "$header" | head -n1)"
      minor="$(sed -n 's/^#define CUDNN_MINOR[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p' "$header" | head -n1)"
      patch="$(sed -n 's/^#define CUDNN_PATCHLEVEL[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p' "$header" | head -n1)"
      if [ -z "$major" ] || [ -z "$minor" ] || [ -z "$patch" ]; then
        CUDNN_PROBLEM="$header names no CUDNN_MAJOR/MINOR/PATCHLEVEL"
        continue
      fi
      for lib in "$d"/lib64/libcudnn.so "$d"/lib/libcudnn.so "$d/lib/$multiarch/libcudnn.so" \
                 "$d"/lib64/libcudnn.so."$major" "$d"/lib/libcudnn.so."$major" "$d/lib/$multiarch/libcudnn.so.$major"; do
        if [ -e "$lib" ]; then
          CUDNN_HEADER="$header" CUDNN_LIBRARY="$lib" CUDNN_VER="$major.$minor.$patch"
          return 0
        fi
      done
      CUDNN_PROBLEM="cuDNN $major.$minor.$patch at $header has no libcudnn.so (or .so.$major) in $d/lib, lib64 or lib/$multiarch"
    done
  done
  return 1
}
