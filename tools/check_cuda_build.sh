#!/usr/bin/env bash
# Compile-and-link check of the CUDA build of Caffe, for machines with nvcc
# but no GPU (and no cuBLAS/cuRAND: those come from NVIDIA's pip wheels).
#
# Run `tools/check_cuda_build.sh --help` for the options. `make check-cuda` calls it.
set -euo pipefail

# NVIDIA's wheels for CUDA 13 (pinned so the check builds against the same
# headers everywhere). They install into nvidia/cu13 (cuBLAS, cuRAND,
# cuobjdump), nvidia/nccl (NCCL) and nvidia/cudnn (cuDNN) below the target folder.
CUDA13_WHEELS=(
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
  nvidia-nccl-cu13==2.27.7
  nvidia-cuda-cuobjdump==13.2.51
  nvidia-cudnn-cu13==9.13.0.50
)
# What the patched cuDNN layers call from the cuDNN 8/9 API, and what cuDNN 8
# removed (Caffe 1.0 called it): libcaffe.so must import the first, not the second.
CUDNN_V8_SYMBOLS=(
  cudnnGetConvolutionForwardAlgorithm_v7
  cudnnGetConvolutionBackwardFilterAlgorithm_v7
  cudnnGetConvolutionBackwardDataAlgorithm_v7
  cudnnSetConvolutionMathType
  cudnnGetErrorString
)
CUDNN_REMOVED_SYMBOLS=(
  cudnnGetConvolutionForwardAlgorithm
  cudnnGetConvolutionBackwardFilterAlgorithm
  cudnnGetConvolutionBackwardDataAlgorithm
)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/cuda_toolkit.sh"
REPO="$(dirname "$HERE")"

usage() {
  cat <<EOF
Usage: tools/check_cuda_build.sh [options]

Builds BVLC Caffe with CUDA and cuDNN exactly as \`make setup CUDA=1\` would
(tools/install_caffe.sh --cuda --cudnn), but only compiles and links it
(--compile-only: nothing is installed), then checks the result:
  - libcaffe.so, pycaffe's _caffe.so and the caffe tool were built;
  - libcaffe.so needs libcudart, libcublas, libcurand and libcudnn (and
    libnccl when NCCL was found), and all three files resolve them (readelf,
    ldd);
  - libcaffe.so imports the cuDNN 8/9 calls of the patched layers
    (${CUDNN_V8_SYMBOLS[*]})
    and none of the calls cuDNN 8 removed;
  - libcaffe.so holds SASS for every requested architecture and PTX for
    the highest (cuobjdump --list-elf / --list-ptx);
  - the caffe tool runs (\`caffe --version\`) and pycaffe imports, without a GPU;
  - the variant without cuDNN (\`make setup CUDA=1 CUDNN=0\`) configures (CMake):
    it compiles the same sources, less the cuDNN layers (with --no-cudnn: that
    variant is built and checked instead, and this step is left out).
A toolkit without cuBLAS/cuRAND/cuDNN (nvcc only, as on the project's machines)
gets them, and NCCL and cuobjdump, from pinned pip wheels for CUDA 13:
  ${CUDA13_WHEELS[*]}
installed once into <cache root>/cuda-wheels/. Prints a short report; exits
non-zero when any check fails.

Options:
  --cuda-arch LIST   Architectures (default: install_caffe.sh's, "70 80 86 90"
                     adapted to the toolkit: "75 80 86 90" with CUDA 13).
  --cuda-root DIR    CUDA toolkit (default: \$CUDA_HOME or the one holding nvcc).
  --python PY        Python for pycaffe and pip (default: .venv/bin/python,
                     else python3).
  --jobs N           Parallel compile jobs (default: number of cores).
  --work DIR         Build tree, log and report (default: /tmp/ddsr-cuda-check;
                     emptied first, if new, empty or an earlier check's).
  --keep             Keep the build tree (default: removed after the check;
                     the log and report stay).
  --no-cudnn         Build and check the variant without cuDNN instead.
  --no-apt           Passed to install_caffe.sh.
  -h, --help         This help.

Environment:
  DDSR_CAFFE_CACHE   Cache root (as for install_caffe.sh).
EOF
}

die() { echo "check_cuda_build: $*" >&2; exit 1; }
say() { echo "check_cuda_build: $*" >&2; }

CUDA_ARCH="" CUDA_ROOT="${CUDA_HOME:-}" PYTHON="" JOBS="$(nproc 2>/dev/null || echo 2)"
WORK="/tmp/ddsr-cuda-check" KEEP=0 APT_ARGS=() WITH_CUDNN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda-arch) CUDA_ARCH="$2"; shift 2 ;;
    --cuda-root) CUDA_ROOT="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-apt) APT_ARGS=(--no-apt); shift ;;
    --no-cudnn) WITH_CUDNN=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
if [ -z "$PYTHON" ]; then
  PYTHON=python3; [ -x "$REPO/.venv/bin/python" ] && PYTHON="$REPO/.venv/bin/python"
fi
locate_cuda_toolkit || die "$CUDA_PROBLEM"
CACHE_ROOT="${DDSR_CAFFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddsr-caffe}"

# --- cuBLAS, cuRAND, cuDNN, NCCL and cuobjdump: the toolkit's, else the wheels -
CUDA_LIBDIR="$CUDA_ROOT/lib64"; [ -d "$CUDA_LIBDIR" ] || CUDA_LIBDIR="$CUDA_ROOT/lib"
CUDA_LIBS="" CUOBJDUMP=""
[ -x "$CUDA_ROOT/bin/cuobjdump" ] && CUOBJDUMP="$CUDA_ROOT/bin/cuobjdump"
if [ ! -e "$CUDA_LIBDIR/libcublas.so" ] || [ ! -e "$CUDA_LIBDIR/libcurand.so" ] || [ -z "$CUOBJDUMP" ] \
   || { [ "$WITH_CUDNN" = 1 ] && [ ! -e "$CUDA_ROOT/include/cudnn_version.h" ]; }; then
  [ "${CUDA_VER%%.*}" = 13 ] || die "CUDA $CUDA_VER at $CUDA_ROOT lacks cuBLAS, cuRAND, cuDNN or cuobjdump, and the pinned wheels are for CUDA 13; install them with the toolkit"
  WHEELS="$CACHE_ROOT/cuda-wheels/$(printf '%s\n' "${CUDA13_WHEELS[@]}" | sha256sum | cut -c1-16)"
  if [ ! -f "$WHEELS/.complete" ]; then
    say "installing ${CUDA13_WHEELS[*]} into $WHEELS"
    mkdir -p "$CACHE_ROOT/cuda-wheels"
    rm -rf "$WHEELS"
    tmp="$(mktemp -d "$CACHE_ROOT/cuda-wheels/.tmp.XXXXXX")"
    wheels_start=$(date +%s)
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$tmp" "${CUDA13_WHEELS[@]}" \
      || { rm -rf "$tmp"; die "pip install of the CUDA wheels failed"; }
    WHEELS_SECONDS=$(( $(date +%s) - wheels_start ))
    printf '%s\n' "${CUDA13_WHEELS[@]}" > "$tmp/.complete"
    mv -T "$tmp" "$WHEELS"
  fi
  CUDA_LIBS="$WHEELS/nvidia/cu13:$WHEELS/nvidia/nccl:$WHEELS/nvidia/cudnn"
  [ -n "$CUOBJDUMP" ] || CUOBJDUMP="$WHEELS/nvidia/cu13/bin/cuobjdump"
fi

# --- Compile and link -----------------------------------------------------------
if [ -e "$WORK" ] && [ -n "$(ls -A "$WORK")" ] && [ ! -e "$WORK/.ddsr-cuda-check" ]; then
  die "--work $WORK is not empty and not an earlier check's folder; choose another"
fi
rm -rf "$WORK"
mkdir -p "$WORK"
touch "$WORK/.ddsr-cuda-check"
LOG="$WORK/build.log" REPORT="$WORK/report.txt" BUILD="$WORK/tree"
COMMON_ARGS=(--cuda --cuda-root "$CUDA_ROOT" --python "$PYTHON" ${APT_ARGS[@]+"${APT_ARGS[@]}"})
[ -n "$CUDA_ARCH" ] && COMMON_ARGS+=(--cuda-arch "$CUDA_ARCH")
[ -n "$CUDA_LIBS" ] && COMMON_ARGS+=(--cuda-libs "$CUDA_LIBS")
if [ "$WITH_CUDNN" = 1 ]; then VARIANT_ARG=--cudnn; else VARIANT_ARG=--no-cudnn; fi
INSTALL_ARGS=("${COMMON_ARGS[@]}" "$VARIANT_ARG" --compile-only --build-dir "$BUILD" --log "$LOG" --jobs "$JOBS")
say "tools/install_caffe.sh ${INSTALL_ARGS[*]}"
start=$(date +%s)
"$HERE/install_caffe.sh" "${INSTALL_ARGS[@]}" 2>&1 | tee "$WORK/install.out" >&2 \
  || die "the CUDA build failed (log: $LOG)"
seconds=$(( $(date +%s) - start ))

# The variant without cuDNN compiles the same sources, less the cuDNN code (all of
# it under #ifdef USE_CUDNN), but configures differently
# (0004-cmake-no-empty-compile-definitions.patch is about it): configure it too.
PLAIN_OK=1 plain_seconds=0
if [ "$WITH_CUDNN" = 1 ]; then
  say "tools/install_caffe.sh ${COMMON_ARGS[*]} --no-cudnn --configure-only"
  plain_start=$(date +%s)
  "$HERE/install_caffe.sh" "${COMMON_ARGS[@]}" --no-cudnn --configure-only --build-dir "$WORK/plain" \
    --log "$WORK/plain.log" > "$WORK/plain.out" 2>&1 || PLAIN_OK=0
  plain_seconds=$(( $(date +%s) - plain_start ))
fi

# --- Check the result -----------------------------------------------------------
FAILED=0
report() { echo "$*" | tee -a "$REPORT"; }
check() {  # $1: what, then the command; reports PASS/FAIL
  local what="$1"; shift
  if "$@" >>"$WORK/checks.log" 2>&1; then report "  PASS  $what"; else report "  FAIL  $what"; FAILED=1; fi
}
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
needs() {  # $1: file, then library stems; each must be NEEDED directly
  local file="$1" stem; shift
  for stem in "$@"; do needed "$file" | grep -q "^lib$stem\.so" || { echo "$file does not need lib$stem"; return 1; }; done
}
resolves() {  # $1: file, then library stems; ldd finds every library it needs, these included
  local out stem; out="$(ldd "$1")"; echo "$out"; shift
  ! grep -q "not found" <<< "$out" || return 1
  for stem in "$@"; do grep -q "lib$stem\.so" <<< "$out" || { echo "ldd: no lib$stem"; return 1; }; done
}
imported() { nm -D --undefined-only "$1" | awk '{print $NF}' | sed 's/@.*//'; }
imports() {  # $1: file, then symbols it must import
  local file="$1" list sym; shift; list="$(imported "$file")"
  for sym in "$@"; do grep -qx "$sym" <<< "$list" || { echo "$file does not import $sym"; return 1; }; done
}
imports_none() {  # $1: file, then symbols it must not import
  local file="$1" list sym; shift; list="$(imported "$file")"
  for sym in "$@"; do ! grep -qx "$sym" <<< "$list" || { echo "$file imports $sym"; return 1; }; done
}
has_code() {  # $1: cuobjdump option, $2: file, then the sm_NN it must list (<file>.N.sm_NN.cubin/.ptx)
  local option="$1" file="$2" listed name; shift 2
  listed="$("$CUOBJDUMP" "$option" "$file")"; echo "$listed"
  for name in "$@"; do grep -q "\.$name\." <<< "$listed" || { echo "no $name in $file"; return 1; }; done
}

LIBCAFFE="$(ls "$BUILD"/build/lib/libcaffe.so.* | head -n1)"
PYCAFFE="$BUILD/build/lib/_caffe.so"
TOOL="$BUILD/build/tools/caffe"
# The architectures install_caffe.sh built for (it adapts its default to the
# toolkit): its CMake line "-DCUDA_ARCH_BIN=...".
ARCHS="$(sed -n 's/.*-DCUDA_ARCH_BIN=\([0-9 ]*\) -DCUDA_ARCH_PTX=.*/\1/p' "$LOG" | head -n1)"
PTX="$(sed -n 's/.*-DCUDA_ARCH_PTX=\([0-9]*\).*/\1/p' "$LOG" | head -n1)"
NCCL="$(sed -n 's/.*(cuDNN: \(ON\|OFF\), NCCL: \(ON\|OFF\)).*/\2/p' "$WORK/install.out" | head -n1)"
CUDNN="$(sed -n 's/.*(cuDNN: \(ON\|OFF\), NCCL: \(ON\|OFF\)).*/\1/p' "$WORK/install.out" | head -n1)"
CUDNN_FOUND="$(sed -n 's/^install_caffe: cuDNN: //p' "$WORK/install.out" | head -n1)"
CUDNN_CMAKE="$(sed -n 's/.*Found cuDNN: ver. \([0-9.?]*\) found.*/\1/p' "$LOG" | head -n1)"
CUDA_LIB_STEMS=(cudart cublas curand); [ "$NCCL" = ON ] && CUDA_LIB_STEMS+=(nccl)
[ "$CUDNN" = ON ] && CUDA_LIB_STEMS+=(cudnn)
sass=() ; for a in $ARCHS; do sass+=("sm_$a"); done

: > "$REPORT"
report "CUDA build check: BVLC Caffe with CUDA $CUDA_VER ($CUDA_ROOT)"
report "  architectures: SASS ${sass[*]}, PTX compute_$PTX; cuDNN $CUDNN, NCCL $NCCL"
report "  cuDNN: $CUDNN_FOUND"
[ -n "$CUDA_LIBS" ] && report "  cuBLAS/cuRAND/NCCL/cuDNN/cuobjdump from: ${CUDA13_WHEELS[*]}${WHEELS_SECONDS:+ (installed in ${WHEELS_SECONDS} s)}"
report "  compile and link: ${seconds} s with $JOBS jobs ($(nproc) cores)"
check "built: $(basename "$LIBCAFFE"), _caffe.so, tools/caffe" test -s "$LIBCAFFE" -a -s "$PYCAFFE" -a -x "$TOOL"
check "libcaffe.so needs ${CUDA_LIB_STEMS[*]}" needs "$LIBCAFFE" "${CUDA_LIB_STEMS[@]}"
for f in "$LIBCAFFE" "$PYCAFFE" "$TOOL"; do
  check "$(basename "$f") resolves ${CUDA_LIB_STEMS[*]} (ldd)" resolves "$f" "${CUDA_LIB_STEMS[@]}"
done
if [ "$WITH_CUDNN" = 1 ]; then
  check "CMake found cuDNN ${CUDNN_CMAKE:-(none)} (read from cudnn_version.h)" \
    bash -c "[[ '$CUDNN_CMAKE' =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] && [ '${CUDNN_CMAKE%%.*}' -ge 8 ]"
  check "libcaffe.so imports the cuDNN 8/9 calls: ${CUDNN_V8_SYMBOLS[*]}" imports "$LIBCAFFE" "${CUDNN_V8_SYMBOLS[@]}"
  check "libcaffe.so imports none of the calls cuDNN 8 removed" imports_none "$LIBCAFFE" "${CUDNN_REMOVED_SYMBOLS[@]}"
  check "the variant without cuDNN (CUDNN=0) configures, in ${plain_seconds} s (log: $WORK/plain.log)" test "$PLAIN_OK" = 1
fi
check "SASS in libcaffe.so: ${sass[*]}" has_code --list-elf "$LIBCAFFE" "${sass[@]}"
check "PTX in libcaffe.so: compute_$PTX" has_code --list-ptx "$LIBCAFFE" "sm_$PTX"  # listed as <file>.sm_90.ptx
check "caffe --version runs without a GPU" bash -c "'$TOOL' --version | grep -q 'caffe version 1.0.0'"
check "pycaffe imports (the CUDA build) without a GPU" \
  env PYTHONPATH="$BUILD/src/python" "$PYTHON" -c "import caffe; caffe.set_mode_cpu()"
report "  cubins per architecture (cuobjdump --list-elf): $("$CUOBJDUMP" --list-elf "$LIBCAFFE" | sed -n 's/.*\.\(sm_[0-9a-z]*\)\.cubin$/\1/p' | sort | uniq -c | sort -k2 | awk '{printf "%s x%s  ", $2, $1}')"
if [ "$CUDNN" = ON ]; then
  report "  cuDNN symbols libcaffe.so imports (nm -D --undefined-only):"
  imported "$LIBCAFFE" | grep '^cudnn' | sort | fmt -w 100 | sed 's/^/    /' | tee -a "$REPORT"
fi

if [ "$FAILED" = 0 ]; then
  report "CUDA build check passed (log: $LOG)"
else
  report "CUDA build check FAILED (details: $WORK/checks.log; build log: $LOG)"
fi
[ "$KEEP" = 1 ] || rm -rf "$BUILD" "$WORK/plain"
exit "$FAILED"
