#!/usr/bin/env bash
# Build BVLC Caffe (Debian's `caffe` source package) into a cache folder and,
# optionally, link it into a Python virtual environment.
#
# Run `tools/install_caffe.sh --help` for the options. `make setup` calls it.
set -euo pipefail
# The whole script is one { ... } group, so bash parses all of it before running any:
# editing the file while a build runs cannot change what that build executes.
{

CAFFE_DEB_VERSION="1.0.0+git20180821.99bd997-8"
CAFFE_UPSTREAM_DIR="caffe-1.0.0+git20180821.99bd997"
CAFFE_DEB_SUITE="bullseye"
# sha256 of the files that make the source package (checked after download).
declare -A SOURCE_SHA256=(
  ["caffe_1.0.0+git20180821.99bd997.orig.tar.gz"]="e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c"
  ["caffe_1.0.0+git20180821.99bd997-8.debian.tar.xz"]="07cf073227494a6b07234e40cb5df91db566616593eef9baafdc4d06ad159f21"
  ["caffe_1.0.0+git20180821.99bd997-8.dsc"]="c492f4893fc1ba1fb514b2d9b4763bc78dc93571ea24adc6e604eccbb93cdd64"
)
# Bump when the patches or the CMake options change, so old builds are not reused.
BUILD_RECIPE=4

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/cuda_toolkit.sh"
PATCH_DIR="$HERE/caffe-patches"

APT_BUILD_PACKAGES=(
  build-essential cmake dpkg-dev patch
  libboost-dev libboost-system-dev libboost-thread-dev libboost-filesystem-dev
  libboost-python-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev
  libgflags-dev libhdf5-dev libopenblas-dev libopenblas-openmp-dev
)
# The CPU speed patches (tools/caffe-patches/*-cpu-speed-*.patch) run Caffe's
# loops on OpenMP threads; OpenBLAS's OpenMP variant then runs single-threaded
# inside them instead of starting threads of its own (issue 11).
OPENBLAS_OPENMP_DIR="openblas-openmp"

usage() {
  cat <<EOF
Usage: tools/install_caffe.sh [options]

Builds BVLC Caffe from Debian's source package caffe=$CAFFE_DEB_VERSION
(BVLC master of 2018-08-21) with HDF5, pycaffe and the \`caffe\` tool, into a
cache folder keyed by version and build options, and links it into a virtual
environment. A build is made in a temporary folder and moved into place only
when complete, so an interrupted build is never reused; a second run with the
same options finds the finished build and does nothing.

Options:
  --python PY        Python interpreter pycaffe is built for (default: python3;
                     its numpy provides the headers). Use the venv's python.
  --venv DIR         After building, make Caffe available from this venv:
                     DIR/bin/caffe and \`import caffe\` in DIR's python.
  --prefix DIR       Install into DIR instead of the cache folder
                     \$DDSR_CAFFE_CACHE/<key> (default cache root:
                     \${XDG_CACHE_HOME:-~/.cache}/ddsr-caffe).
  --jobs N           Parallel compile jobs (default: number of cores).
  --cuda             Build with CUDA (cuBLAS, cuRAND; cuDNN >= 8 and NCCL when
                     present).
  --cudnn            With --cuda: require cuDNN >= 8 (an error without it).
  --no-cudnn         With --cuda: build without cuDNN even when it is there
                     (Caffe's own CUDA convolutions: im2col + cuBLAS).
  --cuda-arch LIST   CUDA architectures, e.g. "70 80 86 90" (default); PTX of
                     the highest is embedded for newer GPUs. The default keeps
                     those the toolkit supports and replaces older ones by its
                     oldest (CUDA 13 dropped sm_70: "75 80 86 90" there).
  --cuda-root DIR    CUDA toolkit (default: \$CUDA_HOME or the one holding nvcc).
  --cuda-libs DIRS   Colon-separated folders, each with include/ and lib/, that
                     add cuBLAS, cuRAND (and NCCL, cuDNN) to a toolkit without
                     them, e.g. NVIDIA's pip wheels nvidia-cublas, nvidia-curand,
                     nvidia-nccl-cu13, nvidia-cudnn-cu13 installed with pip
                     --target T: T/nvidia/cu13:T/nvidia/nccl:T/nvidia/cudnn.
  --compile-only     Build and link, but neither install nor link into a venv
                     (the CUDA compile check on machines without a GPU).
  --configure-only   Like --compile-only, but stop after CMake's configure.
  --build-dir DIR    With --compile-only: build in DIR (new or empty) and keep
                     it for inspection (default: a temporary folder, removed).
  --stock-cpu        Build Caffe without the CPU speed patches
                     (*-cpu-speed-*.patch), linked to the default OpenBLAS,
                     as before they existed: the baseline for
                     bench/bench_caffe_cpu.py (cache key variant cpu-stock).
  --no-apt           Do not install Debian packages (they must be present).
  --log FILE         Build log (default: <cache root>/logs/<key>.log).
  --print-prefix     Print the install folder for these options and exit.
  -h, --help         This help.

Environment:
  DDSR_CAFFE_CACHE   Cache root for builds and the downloaded source.
  CAFFE_ROOT         Use an existing Caffe instead of building one: a source
                     tree with python/ and a build (build/tools/caffe or
                     build/tools/caffe.bin). Only linking into --venv happens.
EOF
}

die() { echo "install_caffe: $*" >&2; exit 1; }
say() { echo "install_caffe: $*" >&2; }

PYTHON=python3 VENV="" PREFIX="" JOBS="$(nproc 2>/dev/null || echo 2)" CUDA=0
CUDA_ARCH="70 80 86 90" CUDA_ARCH_DEFAULT=1 CUDA_ROOT="${CUDA_HOME:-}" CUDA_LIBS="" BUILD_DIR=""
COMPILE_ONLY=0 CONFIGURE_ONLY=0 CUDNN_WANTED=auto APT=1 LOG="" PRINT_PREFIX=0 STOCK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PYTHON="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --cuda) CUDA=1; shift ;;
    --cudnn) CUDNN_WANTED=yes; shift ;;
    --no-cudnn) CUDNN_WANTED=no; shift ;;
    --cuda-arch) CUDA_ARCH="$2"; CUDA_ARCH_DEFAULT=0; shift 2 ;;
    --cuda-root) CUDA_ROOT="$2"; shift 2 ;;
    --cuda-libs) CUDA_LIBS="$2"; shift 2 ;;
    --compile-only) COMPILE_ONLY=1; shift ;;
    --configure-only) COMPILE_ONLY=1 CONFIGURE_ONLY=1; shift ;;
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --stock-cpu) STOCK=1; shift ;;
    --no-apt) APT=0; shift ;;
    --log) LOG="$2"; shift 2 ;;
    --print-prefix) PRINT_PREFIX=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs takes a positive integer, not '$JOBS'"
[ "$STOCK" = 0 ] || [ "$CUDA" = 0 ] || die "--stock-cpu is a CPU build; it does not go with --cuda"
[ -z "$BUILD_DIR" ] || [ "$COMPILE_ONLY" = 1 ] || die "--build-dir goes with --compile-only (an installed build is made in the cache)"
[ "$CUDNN_WANTED" = auto ] || [ "$CUDA" = 1 ] || die "--cudnn and --no-cudnn go with --cuda"

# --- Link an existing build into a venv ---------------------------------------
site_packages() {
  "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

link_into_venv() {  # $1: folder holding the `caffe` package, $2: the caffe binary
  local pydir="$1" tool="$2" sp
  [ -x "$VENV/bin/python" ] || die "--venv $VENV is not a virtual environment (no bin/python)"
  sp="$(site_packages "$VENV")"
  printf '%s\n' "$pydir" > "$sp/bvlc-caffe.pth.tmp" && mv "$sp/bvlc-caffe.pth.tmp" "$sp/bvlc-caffe.pth"
  ln -sfn "$tool" "$VENV/bin/caffe.tmp" && mv -T "$VENV/bin/caffe.tmp" "$VENV/bin/caffe"
  say "linked into $VENV: bin/caffe -> $tool; import caffe from $pydir"
}

if [ -n "${CAFFE_ROOT:-}" ]; then
  [ -d "$CAFFE_ROOT/python/caffe" ] || die "CAFFE_ROOT=$CAFFE_ROOT has no python/caffe"
  tool=""
  for t in build/tools/caffe build/tools/caffe.bin build/install/bin/caffe; do
    [ -x "$CAFFE_ROOT/$t" ] && { tool="$CAFFE_ROOT/$t"; break; }
  done
  [ -n "$tool" ] || die "CAFFE_ROOT=$CAFFE_ROOT has no built caffe tool (build/tools/caffe)"
  [ -e "$CAFFE_ROOT/python/caffe/_caffe.so" ] || die "CAFFE_ROOT=$CAFFE_ROOT has no built pycaffe (python/caffe/_caffe.so)"
  [ -n "$VENV" ] && link_into_venv "$CAFFE_ROOT/python" "$tool"
  exit 0
fi

# --- The cache key: what was built, for which Python -------------------------
command -v "$PYTHON" >/dev/null 2>&1 || [ -x "$PYTHON" ] || die "no Python interpreter '$PYTHON'"
read -r PY_VER NUMPY_MAJOR PY_INCLUDE PY_LIBDIR PY_LDLIB < <("$PYTHON" - <<'EOF'
import sys, sysconfig
try:
    import numpy
    npmaj = numpy.__version__.split(".")[0]
except ImportError:
    npmaj = "none"
print("%d.%d" % sys.version_info[:2], npmaj, sysconfig.get_paths()["include"],
      sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY"))
EOF
)
[ "$NUMPY_MAJOR" != none ] || die "$PYTHON has no numpy; pycaffe is built against it (run make setup, or pip install numpy)"

CACHE_ROOT="${DDSR_CAFFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddsr-caffe}"
MULTIARCH="$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
if [ "$CUDA" = 1 ]; then
  locate_cuda_toolkit || die "--cuda: $CUDA_PROBLEM"
  # Each toolkit builds for its own range of GPUs (CUDA 13 starts at sm_75);
  # nvcc --list-gpu-arch (CUDA >= 11) names them.
  CUDA_ARCH="$(echo $CUDA_ARCH)"
  [[ "$CUDA_ARCH" =~ ^[0-9]+( [0-9]+)*$ ]] || die "--cuda-arch takes numbers like \"70 80 86 90\", not '$CUDA_ARCH'"
  supported="$("$CUDA_ROOT/bin/nvcc" --list-gpu-arch 2>/dev/null | sed -n 's/^compute_\([0-9]*\)$/\1/p' | sort -n | tr '\n' ' ' || true)"
  if [ -n "$supported" ]; then
    oldest="${supported%% *}" archs=""
    for a in $CUDA_ARCH; do
      if [[ " $supported" == *" $a "* ]]; then archs="$archs $a"
      elif [ "$CUDA_ARCH_DEFAULT" = 1 ] && [ "$a" -lt "$oldest" ]; then archs="$archs $oldest"
      else die "--cuda-arch: CUDA $CUDA_VER cannot build for sm_$a; it builds for: $supported"
      fi
    done
    CUDA_ARCH="$(echo $archs | tr ' ' '\n' | sort -nu | tr '\n' ' ' | sed 's/ $//')"
  fi
  VARIANT="cuda${CUDA_VER}-sm$(echo "$CUDA_ARCH" | tr ' ' '_')"
  # cuDNN >= 8 (the patched convolution layers use its API): in the toolkit,
  # in --cuda-libs, or the system's.
  CUDNN_DIRS=("$CUDA_ROOT")
  [ -z "$CUDA_LIBS" ] || IFS=: read -r -a cudnn_libs_dirs <<< "$CUDA_LIBS"
  CUDNN_DIRS+=(${cudnn_libs_dirs[@]+"${cudnn_libs_dirs[@]}"})
  CUDNN=OFF
  if [ "$CUDNN_WANTED" = no ]; then
    CUDNN_WHY="off (--no-cudnn)"
  elif locate_cudnn "$MULTIARCH" "${CUDNN_DIRS[@]}"; then
    CUDNN=ON CUDNN_WHY="$CUDNN_VER ($CUDNN_HEADER, $CUDNN_LIBRARY)"
  else
    [ "$CUDNN_WANTED" = auto ] || die "--cudnn: $CUDNN_PROBLEM"
    CUDNN_WHY="off: $CUDNN_PROBLEM"
  fi
  if [ "$CUDNN" = ON ]; then VARIANT="$VARIANT-cudnn${CUDNN_VER%.*}"; else VARIANT="$VARIANT-nocudnn"; fi
elif [ "$STOCK" = 1 ]; then
  VARIANT="cpu-stock"
else
  VARIANT="cpu"
fi
KEY="caffe-${CAFFE_DEB_VERSION}-r${BUILD_RECIPE}-${VARIANT}-py${PY_VER}-numpy${NUMPY_MAJOR}"
[ -n "$PREFIX" ] || PREFIX="$CACHE_ROOT/$KEY"
PREFIX="$(realpath -m "$PREFIX")"
if [ "$PRINT_PREFIX" = 1 ]; then echo "$PREFIX"; exit 0; fi
STAMP="$PREFIX/.ddsr-build-complete"

if [ "$COMPILE_ONLY" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
  say "up to date: $PREFIX"
  [ -n "$VENV" ] && link_into_venv "$PREFIX/lib/python3/dist-packages" "$PREFIX/bin/caffe"
  exit 0
fi

# --- Debian packages ----------------------------------------------------------
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  cat >&2 <<EOF
install_caffe: this system has no apt-get, so the build dependencies cannot be
installed automatically. Install by hand (names vary by distribution): a C++
compiler, CMake >= 3.5, Boost (system, thread, filesystem, and Boost.Python for
Python $PY_VER), protobuf (library and protoc), glog, gflags, HDF5 and OpenBLAS
development files, then rerun with --no-apt; or point CAFFE_ROOT at a Caffe you
built yourself (a source tree with python/ and build/tools/caffe).
EOF
  [ "$APT" = 0 ] || exit 1
fi

missing_packages() {
  local p
  for p in "${APT_BUILD_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
if [ "$APT" = 1 ]; then
  mapfile -t MISSING < <(missing_packages)
  if [ "${#MISSING[@]}" -gt 0 ]; then
    say "installing Debian packages: ${MISSING[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >&2
  fi
fi

BOOST_PY="libboost_python${PY_VER/./}.so"
if [ ! -e "/usr/lib/$MULTIARCH/$BOOST_PY" ] && ! ls /usr/lib/*/"$BOOST_PY" /usr/local/lib/"$BOOST_PY" >/dev/null 2>&1; then
  found="$(ls /usr/lib/"$MULTIARCH"/libboost_python3*.so 2>/dev/null | sed 's/.*libboost_python3\([0-9]*\)\.so/3.\1/' | tr '\n' ' ')"
  die "Python $PY_VER has no matching Boost.Python ($BOOST_PY not found; this system has Boost.Python for Python: ${found:-none}). Build with that Python (--python), or install Boost.Python for $PY_VER."
fi

# --- Source -------------------------------------------------------------------
mkdir -p "$CACHE_ROOT/logs" "$CACHE_ROOT/src"
[ -n "$LOG" ] || LOG="$CACHE_ROOT/logs/$KEY.log"
mkdir -p "$(dirname "$LOG")"
: > "$LOG"
say "log: $LOG"

fail() {
  echo "install_caffe: $1 failed; last lines of $LOG:" >&2
  tail -n 30 "$LOG" >&2
  echo "install_caffe: $1 failed (full log: $LOG)" >&2
  exit 1
}
run() {  # run a build step, output to the log
  local what="$1"; shift
  "$@" >>"$LOG" 2>&1 || fail "$what"
}

source_ok() {
  local f
  for f in "${!SOURCE_SHA256[@]}"; do
    [ -f "$CACHE_ROOT/src/$f" ] || return 1
    echo "${SOURCE_SHA256[$f]}  $CACHE_ROOT/src/$f" | sha256sum --quiet -c - >/dev/null 2>&1 || return 1
  done
}

debian_mirror() {
  # The Debian mirror this machine's own apt sources use (never hard-coded).
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  cat "${files[@]}" 2>/dev/null | sed -n \
    -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(\(https\?\|ftp\|file\):[^[:space:]]*\)[[:space:]]\+[a-z-]*[[:space:]].*main.*/\2/p' \
    -e 's/^URIs:[[:space:]]*\(\(https\?\|ftp\|file\):[^[:space:]]*\).*/\1/p' |
    grep -v -e security -e '^$' | grep -i -m1 debian || true
}

if ! source_ok; then
  command -v apt-get >/dev/null 2>&1 || die "cannot fetch the source without apt-get; put the three files of caffe=$CAFFE_DEB_VERSION into $CACHE_ROOT/src"
  MIRROR="$(debian_mirror)"
  [ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list*; cannot fetch caffe=$CAFFE_DEB_VERSION"
  say "fetching caffe=$CAFFE_DEB_VERSION source from $MIRROR ($CAFFE_DEB_SUITE)"
  APTDIR="$(mktemp -d)"
  trap 'rm -rf "$APTDIR"' EXIT
  mkdir -p "$APTDIR/lists/partial" "$APTDIR/dl"
  echo "deb-src $MIRROR $CAFFE_DEB_SUITE main" > "$APTDIR/sources.list"
  APT_OPTS=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" -o "APT::Sandbox::User=root")
  run "apt-get update (deb-src $CAFFE_DEB_SUITE)" apt-get "${APT_OPTS[@]}" update
  (cd "$APTDIR/dl" && apt-get "${APT_OPTS[@]}" source --download-only "caffe=$CAFFE_DEB_VERSION") >>"$LOG" 2>&1 \
    || fail "apt-get source caffe=$CAFFE_DEB_VERSION"
  for f in "${!SOURCE_SHA256[@]}"; do
    [ -f "$APTDIR/dl/$f" ] || die "the fetched source lacks $f: not caffe=$CAFFE_DEB_VERSION"
    echo "${SOURCE_SHA256[$f]}  $APTDIR/dl/$f" | sha256sum --quiet -c - >/dev/null 2>&1 \
      || die "$f does not have the expected sha256: not the expected caffe=$CAFFE_DEB_VERSION source"
    mv "$APTDIR/dl/$f" "$CACHE_ROOT/src/$f"
  done
fi

# --- Build --------------------------------------------------------------------
if [ -n "$BUILD_DIR" ]; then  # --compile-only --build-dir: kept for inspection
  mkdir -p "$BUILD_DIR"
  [ -z "$(ls -A "$BUILD_DIR")" ] || die "--build-dir $BUILD_DIR is not empty"
  WORK="$(realpath "$BUILD_DIR")"
  trap 'rm -rf ${APTDIR:+"$APTDIR"}' EXIT
else
  WORK="$(mktemp -d "$CACHE_ROOT/.build-$KEY.XXXXXX")"
  trap 'rm -rf "$WORK" ${APTDIR:+"$APTDIR"}' EXIT
fi
if [ "$CUDA" = 1 ]; then took="15 to 45 minutes on 2 cores for four architectures"; else took="3 to 8 minutes on 2 cores"; fi
say "building $KEY in $WORK with $JOBS jobs ($took)"
run "dpkg-source -x" dpkg-source --no-check -x "$CACHE_ROOT/src/caffe_${CAFFE_DEB_VERSION}.dsc" "$WORK/src"
grep -q "^caffe ($CAFFE_DEB_VERSION)" "$WORK/src/debian/changelog" \
  || die "the unpacked source is not caffe $CAFFE_DEB_VERSION (debian/changelog)"
for p in "$PATCH_DIR"/*.patch; do
  # The CPU speed patches are for the CPU build: the CUDA build trains on the GPU and keeps
  # Caffe's own CPU layers, the patch set its compile-and-link check covers.
  { [ "$STOCK" = 1 ] || [ "$CUDA" = 1 ]; } && [[ "$(basename "$p")" == *-cpu-speed-* ]] && continue
  run "patch $(basename "$p")" patch -d "$WORK/src" -p1 --forward -i "$p"
done

merged_cuda_root() {  # $1: toolkit, $2: colon-separated library folders; prints the merged toolkit
  local toolkit dirs=() d e f name root tmp
  toolkit="$(realpath "$1")"
  IFS=: read -r -a dirs <<< "$2"
  for d in "${!dirs[@]}"; do
    [ -d "${dirs[$d]}/include" ] && [ -d "${dirs[$d]}/lib" ] || die "--cuda-libs: ${dirs[$d]} has no include/ and lib/"
    dirs[$d]="$(realpath "${dirs[$d]}")"
  done
  root="$CACHE_ROOT/cuda-roots/$(printf '%s\n' "$toolkit" "${dirs[@]}" | sha256sum | cut -c1-16)"
  if [ ! -d "$root" ]; then
    mkdir -p "$CACHE_ROOT/cuda-roots"
    tmp="$(mktemp -d "$CACHE_ROOT/cuda-roots/.tmp.XXXXXX")"
    for e in "$toolkit"/*; do
      name="${e##*/}"
      case "$name" in include|lib|lib64) ;; *) ln -s "$e" "$tmp/$name" ;; esac
    done
    mkdir "$tmp/include" "$tmp/lib"
    ln -s lib "$tmp/lib64"
    f="$toolkit/lib64"; [ -d "$f" ] || f="$toolkit/lib"
    for d in "$toolkit/include" "$f" "${dirs[@]/%//include}" "${dirs[@]/%//lib}"; do
      case "$d" in */include) f="$tmp/include" ;; *) f="$tmp/lib" ;; esac
      for e in "$d"/*; do
        if [ -e "$e" ] && [ ! -e "$f/${e##*/}" ]; then ln -s "$e" "$f/${e##*/}"; fi
      done
    done
    # The pip wheels ship versioned libraries only (libcublas.so.13); the
    # linker and CMake look for the unversioned name.
    for e in "$tmp"/lib/lib*.so.*; do
      [ -e "$e" ] || continue
      name="${e##*/}"; name="${name%%.so.*}.so"
      [ -e "$tmp/lib/$name" ] || ln -s "${e##*/}" "$tmp/lib/$name"
    done
    mv -T "$tmp" "$root" 2>/dev/null || rm -rf "$tmp"  # another run made it first
  fi
  echo "$root"
}

CMAKE_ARGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DCMAKE_INSTALL_PREFIX="$PREFIX"
  -DBLAS=Open -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DUSE_LMDB=OFF -DUSE_HDF5=ON
  -DBUILD_python=ON -DBUILD_python_layer=OFF -DBUILD_docs=OFF -DBUILD_matlab=OFF
  -Dpython_version="$PY_VER"
  -DPYTHON_EXECUTABLE="$(command -v "$PYTHON" || echo "$PYTHON")"
  -DPYTHON_INCLUDE_DIR="$PY_INCLUDE"
  -DPYTHON_LIBRARY="$PY_LIBDIR/$PY_LDLIB"
)
if [ "$CUDA" = 1 ]; then
  if [ -n "$CUDA_LIBS" ]; then
    # FindCUDA looks for cuBLAS and cuRAND in the toolkit only (and forgets
    # their paths given with -D on a first configure), so give it a toolkit
    # that has them: a folder of links to the toolkit and to --cuda-libs.
    # It is kept in the cache, as an installed build's RPATH names it.
    CUDA_ROOT="$(merged_cuda_root "$CUDA_ROOT" "$CUDA_LIBS")"
    say "CUDA toolkit with --cuda-libs: $CUDA_ROOT"
  fi
  CUDA_LIBDIR="$CUDA_ROOT/lib64"; [ -d "$CUDA_LIBDIR" ] || CUDA_LIBDIR="$CUDA_ROOT/lib"
  for lib in cublas curand; do
    [ -e "$CUDA_LIBDIR/lib$lib.so" ] || [ -e "/usr/lib/$MULTIARCH/lib$lib.so" ] \
      || die "--cuda: no lib$lib.so in $CUDA_LIBDIR or /usr/lib/$MULTIARCH; install cuBLAS and cuRAND with the toolkit or pass --cuda-libs"
  done
  CUDNN_ARGS=()
  if [ "$CUDNN" = ON ]; then
    # Found before --cuda-libs were merged into one toolkit (for the cache key); the
    # merged toolkit has it under the unversioned library name the linker wants.
    if [ -n "$CUDA_LIBS" ] && [ -e "$CUDA_ROOT/include/cudnn_version.h" ] && [ -e "$CUDA_LIBDIR/libcudnn.so" ]; then
      CUDNN_ARGS=(-DCUDNN_INCLUDE="$CUDA_ROOT/include" -DCUDNN_LIBRARY="$CUDA_LIBDIR/libcudnn.so")
    else
      CUDNN_ARGS=(-DCUDNN_INCLUDE="$(dirname "$CUDNN_HEADER")" -DCUDNN_LIBRARY="$CUDNN_LIBRARY")
    fi
  fi
  say "cuDNN: $CUDNN_WHY"
  # NCCL (multi-GPU training) needs its development files: nccl.h and libnccl.so.
  NCCL=OFF NCCL_ARGS=()
  if [ -e "$CUDA_LIBDIR/libnccl.so" ] && [ -e "$CUDA_ROOT/include/nccl.h" ]; then
    # Caffe's FindNCCL searches /usr and $NCCL_DIR only.
    NCCL=ON NCCL_ARGS=(-DNCCL_INCLUDE_DIR="$CUDA_ROOT/include" -DNCCL_LIBRARIES="$CUDA_LIBDIR/libnccl.so")
  elif [ -e "/usr/lib/$MULTIARCH/libnccl.so" ] && [ -e /usr/include/nccl.h ]; then
    NCCL=ON
  fi
  say "CUDA $CUDA_VER at $CUDA_ROOT, architectures: $CUDA_ARCH (cuDNN: $CUDNN, NCCL: $NCCL)"
  highest="$(echo "$CUDA_ARCH" | tr ' ' '\n' | sort -n | tail -n1)"
  CMAKE_ARGS+=(
    -DCPU_ONLY=OFF -DUSE_CUDNN="$CUDNN" -DUSE_NCCL="$NCCL" ${CUDNN_ARGS[@]+"${CUDNN_ARGS[@]}"}
    -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT"
    -DCUDA_ARCH_NAME=Manual -DCUDA_ARCH_BIN="$CUDA_ARCH" -DCUDA_ARCH_PTX="$highest"
    ${NCCL_ARGS[@]+"${NCCL_ARGS[@]}"}
  )
else
  CMAKE_ARGS+=(-DCPU_ONLY=ON -DUSE_CUDNN=OFF -DUSE_NCCL=OFF)
fi
# OpenMP for the patched CPU build only.
if [ "$STOCK" = 0 ] && [ "$CUDA" = 0 ]; then
  blas_inc="/usr/include/$MULTIARCH/$OPENBLAS_OPENMP_DIR" blas_lib="/usr/lib/$MULTIARCH/$OPENBLAS_OPENMP_DIR/libopenblas.so"
  if [ -e "$blas_inc/cblas.h" ] && [ -e "$blas_lib" ]; then
    # Its folder lands in the RPATH, so the OpenMP variant is loaded at run
    # time whichever libopenblas.so.0 the system's alternatives choose.
    CMAKE_ARGS+=(-DOpenBLAS_INCLUDE_DIR="$blas_inc" -DOpenBLAS_LIB="$blas_lib")
  else
    say "no OpenMP OpenBLAS ($blas_lib): the default one runs single-threaded inside Caffe's OpenMP loops"
  fi
  CMAKE_ARGS+=(-DUSE_OPENMP=ON)
fi
{ echo "# cmake ${CMAKE_ARGS[*]}"; } >>"$LOG"
run "cmake configure" cmake -S "$WORK/src" -B "$WORK/build" "${CMAKE_ARGS[@]}" ${DDSR_CAFFE_CMAKE_EXTRA:-}
if [ "$CONFIGURE_ONLY" = 1 ]; then
  say "configure done: $WORK/build (not built: --configure-only)"
  exit 0
fi
run "compile (make -j$JOBS)" make -C "$WORK/build" -j"$JOBS"
if [ "$COMPILE_ONLY" = 1 ]; then
  say "compile-and-link done: $WORK/build/tools/caffe, $WORK/build/lib/_caffe.so (not installed: --compile-only)"
  ls -l "$WORK/build/lib" "$WORK/build/tools/caffe" >&2
  exit 0
fi
run "make install" make -C "$WORK/build" install DESTDIR="$WORK/stage"

STAGED="$WORK/stage$PREFIX"
# The tools are built with their final RPATH; point the loader at the staged
# libraries for the check below.
LD_LIBRARY_PATH="$STAGED/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$STAGED/bin/caffe" --version >>"$LOG" 2>&1 \
  || fail "the built caffe --version"
LD_LIBRARY_PATH="$STAGED/lib" PYTHONPATH="$STAGED/lib/python3/dist-packages" \
  "$PYTHON" -c "import caffe; caffe.set_mode_cpu()" >>"$LOG" 2>&1 || fail "import caffe from the build"
echo "$KEY" > "$STAGED/.ddsr-build-complete"
cp "$LOG" "$STAGED/build.log"

mkdir -p "$(dirname "$PREFIX")"
if [ -e "$PREFIX" ]; then
  mv -T "$PREFIX" "$WORK/old-prefix"  # an incomplete or stale build
fi
mv -T "$STAGED" "$PREFIX"
say "installed $KEY into $PREFIX"
[ -n "$VENV" ] && link_into_venv "$PREFIX/lib/python3/dist-packages" "$PREFIX/bin/caffe"
exit 0
}
