#!/usr/bin/env bash
# On a GPU machine with no network and no Debian build of Caffe: unpack the bundle that
# tools/gpu_bundle.sh made, find CUDA's libraries there, and run tools/check_gpu.py.
#
#   bash tools/gpu_device_check.sh [RESULTS]     # RESULTS: default $OUT, else reports/gpu
#
# Needs: .gpu-bundle/caffe-bundle.tar.xz beside this checkout, python3 with numpy and h5py,
# the NVIDIA driver, and CUDA 13's cudart, cuBLAS, cuRAND, cuDNN 9 and NCCL 2 libraries
# (a toolkit's, or NVIDIA's pip wheels in python3's site-packages). Writes RESULTS/report.md,
# RESULTS/check.log and RESULTS/logs.tar.xz (every Caffe log); docs/cuda.md says more.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-reports/gpu}}"
BUNDLE=".gpu-bundle/caffe-bundle.tar.xz"
die() { echo "gpu_device_check: $*" >&2; exit 1; }
[ -f "$BUNDLE" ] || die "no $BUNDLE (make it with tools/gpu_bundle.sh and carry .gpu-bundle)"
mkdir -p "$RESULTS"

CAFFE_DIR="$(mktemp -d /tmp/ddsr-caffe-bundle.XXXXXX)"
trap 'rm -rf "$CAFFE_DIR"' EXIT
tar -xJf "$BUNDLE" -C "$CAFFE_DIR"

# CUDA's libraries: python3's NVIDIA wheels, then the toolkit's and the system's folders.
roots=()
while read -r p; do [ -d "$p/nvidia" ] && roots+=("$p/nvidia"); done < <(python3 -c 'import sys; print("\n".join(sys.path))')
roots+=("${CUDA_HOME:-/usr/local/cuda}/lib64" "${CUDA_HOME:-/usr/local/cuda}/targets/x86_64-linux/lib"
        /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu /usr/local/nvidia/lib64 /usr/local/nvidia/lib)
dirs=""
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudnn.so.9 libnccl.so.2; do
  found=""
  for r in "${roots[@]}"; do
    [ -d "$r" ] || continue
    found="$(find -L "$r" -maxdepth 4 -name "$lib" -print -quit 2>/dev/null || true)"
    [ -n "$found" ] && break
  done
  [ -n "$found" ] || die "$lib not found under: ${roots[*]}"
  d="$(dirname "$found")"
  [[ ":$dirs:" == *":$d:"* ]] || dirs="$dirs:$d"
done
export LD_LIBRARY_PATH="$CAFFE_DIR/lib$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
  echo "# $(date -u +%FT%TZ) $(uname -srm); $(ldd --version | head -n1)"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader || true
  echo "# LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$CAFFE_DIR/bin/caffe" | grep -E 'not found|cud|nccl|cublas|curand' || true
} > "$RESULTS/check.log" 2>&1
status=0
PYTHONUNBUFFERED=1 python3 tools/check_gpu.py --caffe "$CAFFE_DIR/bin/caffe" --out "$CAFFE_DIR/check" "${@:2}" \
  2>&1 | tee -a "$RESULTS/check.log" || status=$?
[ -f "$CAFFE_DIR/check/report.md" ] && cp "$CAFFE_DIR/check/report.md" "$RESULTS/report.md"
[ -d "$CAFFE_DIR/check/work" ] && (cd "$CAFFE_DIR/check/work" && find . -name '*.log' -o -name '*prototxt' | tar -cJf - -T -) > "$RESULTS/logs.tar.xz"
exit "$status"
