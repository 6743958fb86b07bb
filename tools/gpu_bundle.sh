#!/usr/bin/env bash
# Pack a CUDA build of Caffe, and the non-CUDA libraries it loads, for a GPU machine
# that has neither this machine's Debian libraries nor a network.
#
# Run `tools/gpu_bundle.sh --help` for the options; docs/cuda.md says how it is used.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tools/gpu_bundle.sh --from DIR [--out DIR]

Packs the caffe tool and libcaffe of a CUDA build, with every shared library they
load except the C library's own and CUDA's (cudart, cuBLAS, cuRAND, cuDNN, NCCL:
the GPU machine has those, e.g. as NVIDIA's pip wheels), into OUT/caffe-bundle.tar.xz,
and OUT/README.txt listing them. tools/gpu_device_check.sh unpacks it on the GPU
machine and runs tools/check_gpu.py with it. The loader paths of the libraries are
those of this machine; the device script sets LD_LIBRARY_PATH.

Options:
  --from DIR   A CUDA build: an installed one (DIR/bin/caffe, DIR/lib/libcaffe.so.*,
               e.g. ~/.cache/ddsr-caffe/<key>) or a build tree (DIR/build/tools/caffe,
               DIR/build/lib, e.g. tools/check_cuda_build.sh --keep's
               /tmp/ddsr-cuda-check/tree).
  --out DIR    Where the bundle goes (default: .gpu-bundle, which this script adds to
               git's info/exclude, so that it is carried, not committed).
  -h, --help   This help.
EOF
}

die() { echo "gpu_bundle: $*" >&2; exit 1; }

FROM="" OUT=".gpu-bundle"
while [ $# -gt 0 ]; do
  case "$1" in
    --from) FROM="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$FROM" ] || die "--from DIR is required (see --help)"
if [ -x "$FROM/bin/caffe" ]; then TOOL="$FROM/bin/caffe" LIBDIR="$FROM/lib"
elif [ -x "$FROM/build/tools/caffe" ]; then TOOL="$FROM/build/tools/caffe" LIBDIR="$FROM/build/lib"
else die "$FROM has neither bin/caffe nor build/tools/caffe"
fi
LIBCAFFE="$(ls "$LIBDIR"/libcaffe.so.* 2>/dev/null | head -n1)"
[ -n "$LIBCAFFE" ] || die "no libcaffe.so.* in $LIBDIR"
ldd "$TOOL" | grep -q 'libcudart\.so' || die "$TOOL is not a CUDA build (it does not load libcudart)"

# What the GPU machine provides: the C library's own libraries, and CUDA's.
provided='^(linux-vdso|ld-linux|libc|libm|libpthread|libdl|librt|libresolv|libutil|libcuda|libcudart|libcublas|libcublasLt|libcurand|libcudnn[a-z_]*|libnccl|libnvrtc|libnvJitLink)\.so'
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib"
cp "$TOOL" "$STAGE/bin/caffe"
cp "$LIBCAFFE" "$STAGE/lib/"
ln -s "$(basename "$LIBCAFFE")" "$STAGE/lib/libcaffe.so"
missing=()
while read -r name arrow path _; do
  [ "$arrow" = "=>" ] || continue
  [[ "$name" =~ $provided ]] && continue
  [[ "$name" == libcaffe.so* ]] && continue
  if [ "$path" = "not" ]; then missing+=("$name"); continue; fi
  cp -L "$path" "$STAGE/lib/$name"
done < <(ldd "$TOOL")
[ "${#missing[@]}" = 0 ] || die "ldd $TOOL does not find: ${missing[*]}"

glibc="$(objdump -T "$STAGE"/bin/caffe "$STAGE"/lib/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -n1)"
mkdir -p "$OUT"
tar -cJf "$OUT/caffe-bundle.tar.xz.tmp" -C "$STAGE" bin lib
mv "$OUT/caffe-bundle.tar.xz.tmp" "$OUT/caffe-bundle.tar.xz"
{
  echo "caffe-bundle.tar.xz: the CUDA build of Caffe from $FROM, packed $(date -u +%F) by tools/gpu_bundle.sh"
  echo "needs on the GPU machine: glibc with $glibc, the NVIDIA driver, and these (LD_LIBRARY_PATH):"
  ldd "$TOOL" | awk '{print $1}' | grep -E "$provided" | grep -vE '^(linux-vdso|ld-linux|libc|libm|libpthread|libdl|librt|libresolv)\.' | sed 's/^/  /'
  echo "packed:"
  (cd "$STAGE" && find bin lib -type f -printf '  %p %s\n' | sort)
} > "$OUT/README.txt"
if git rev-parse --git-dir >/dev/null 2>&1 && [ "$OUT" = ".gpu-bundle" ]; then
  exclude="$(git rev-parse --git-path info/exclude)"
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.gpu-bundle/' "$exclude" 2>/dev/null || echo '/.gpu-bundle/' >> "$exclude"
fi
echo "gpu_bundle: $OUT/caffe-bundle.tar.xz ($(du -h "$OUT/caffe-bundle.tar.xz" | cut -f1); needs $glibc)" >&2
