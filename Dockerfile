# ddsr-caffe with BVLC Caffe built for CUDA: trains and evaluates on NVIDIA GPUs.
#
# Usage (README.md, "Docker"):
#   docker build -t ddsr-caffe .
#   docker run --gpus all --rm -v "$PWD/data:/opt/ddsr-caffe/data" ddsr-caffe make reproduce
#
# Build arguments:
#   CUDA       CUDA toolkit from NVIDIA's Debian 12 repository (default 13.0;
#              13.x needs a driver >= 580 on the host; 12.9 runs on drivers >= 525
#              and still builds for sm_70, which CUDA 13 dropped).
#   CUDA_ARCH  GPU architectures for Caffe (default: tools/install_caffe.sh's,
#              "70 80 86 90" as far as the toolkit supports them, PTX for newer GPUs).
#   JOBS       Parallel compile jobs (default: all cores).
#
# Why Debian 12 and not nvidia/cuda (Ubuntu): tools/install_caffe.sh builds
# Debian's caffe source package, fetched from the Debian mirror of the
# machine's own apt sources, with Debian's package names; NVIDIA publishes the
# same toolkit packages for Debian 12, so this is the project's own setup
# (`make setup CUDA=1`) on the Debian it is tested on, plus a toolkit.
FROM debian:bookworm
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ARG CUDA=13.0
ARG CUDA_ARCH=
ARG JOBS=

ENV CUDA_HOME=/usr/local/cuda-${CUDA} \
    DDSR_CAFFE_CACHE=/opt/ddsr-caffe-cache \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=${CUDA}"
ENV PATH=/opt/ddsr-caffe/.venv/bin:${CUDA_HOME}/bin:${PATH}

# The toolkit: nvcc, the CUDA runtime, cuBLAS, cuRAND, cuobjdump (for the
# build check), and NCCL for `caffe train -gpu all`. No cuDNN: Caffe 1.0 needs
# its v7 API, which current cuDNN no longer has (tools/install_caffe.sh turns
# USE_CUDNN on only for a cuDNN 7). Package versions: those of Debian 12 and
# of the chosen CUDA release (the -X-Y suffix), so no further pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && curl -fsSLo /tmp/cuda-keyring.deb \
       https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
    && dpkg -i /tmp/cuda-keyring.deb \
    && rm /tmp/cuda-keyring.deb \
    && apt-get update \
    && v="$(echo "${CUDA}" | tr . -)" \
    && apt-get install -y --no-install-recommends \
       "cuda-minimal-build-${v}" "libcublas-dev-${v}" "libcurand-dev-${v}" "cuda-cuobjdump-${v}" \
       libnccl2 libnccl-dev \
    && rm -rf /var/lib/apt/lists/*

# What `make setup` needs before it installs Caffe's own build packages.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make python3 python3-venv python3-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/ddsr-caffe

# Setup first, from the files it reads, so that editing the code does not
# rebuild Caffe: the venv, Caffe's Debian build packages, and Caffe with CUDA
# (tools/install_caffe.sh --cuda, cached in $DDSR_CAFFE_CACHE).
COPY Makefile requirements.txt pyproject.toml README.md ./
COPY python/ python/
COPY tools/ tools/
RUN make setup CUDA=1 ${CUDA_ARCH:+CUDA_ARCH="${CUDA_ARCH}"} ${JOBS:+JOBS="${JOBS}"} \
    && rm -rf /var/lib/apt/lists/* /root/.cache/pip

# The rest of the project (see .dockerignore for what stays out).
COPY . .

CMD ["make", "help"]
