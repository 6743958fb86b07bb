# ddsr-caffe: `make demo` and `make test` are all a new user needs (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
# `make setup CUDA=1 [CUDA_ARCH=...] [CUDNN=0|1] [CUDA_LIBS=...]` is remembered here, so that
# later targets (which all run setup first) keep using that build instead of building the CPU one.
# CUDNN: empty = cuDNN >= 8 when found, 0 = without it, 1 = required.
-include $(VENV)/.ddsr-caffe-options
CUDA   ?= 0
CUDA_ARCH ?=
CUDNN ?=
CUDA_LIBS ?=

CUDNN_ARGS := $(if $(filter 0,$(CUDNN)),--no-cudnn) $(if $(filter 1,$(CUDNN)),--cudnn)
INSTALL_CAFFE_ARGS := --python $(PY) --venv $(VENV) --jobs $(JOBS) \
	$(if $(filter 1,$(CUDA)),--cuda $(CUDNN_ARGS) $(if $(CUDA_LIBS),--cuda-libs "$(CUDA_LIBS)")) \
	$(if $(CUDA_ARCH),--cuda-arch "$(CUDA_ARCH)")

.PHONY: help setup venv caffe demo test nets check-nets data h5 reproduce reproduce-ablations official baselines eval-bicubic bench check-cuda check-gpu

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-22s %s\n", $$1, $$2}'

setup: venv caffe ## Debian packages, .venv with the pinned dependencies, BVLC Caffe (cached); CUDA=1 for the GPU build

venv: $(VENV)/.ddsr-requirements
$(VENV)/.ddsr-requirements: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

caffe: venv
	@tools/install_caffe.sh $(INSTALL_CAFFE_ARGS)
	@printf 'CUDA ?= %s\nCUDA_ARCH ?= %s\nCUDNN ?= %s\nCUDA_LIBS ?= %s\n' '$(CUDA)' '$(CUDA_ARCH)' '$(CUDNN)' '$(CUDA_LIBS)' > $(VENV)/.ddsr-caffe-options

# GPU=N trains on GPU N (a CUDA build: `make setup CUDA=1`); DATA=DIR reads the set folders from DIR.
GPU ?=
DATA ?=

demo: setup ## The main job on the CPU, offline: train a small DDSR, evaluate it against bicubic (reports/demo/)
	$(PY) tools/demo.py $(if $(DATA),--data $(DATA)) $(if $(GPU),--gpu $(GPU))

test: setup ## Run the test suite (unit tests and integration tests through real Caffe)
	$(PY) -m pytest -q

nets: setup ## Regenerate prototxt/ and solvers/ from experiments.yaml
	$(PY) tools/make_nets.py

check-nets: setup ## Fail if prototxt/ or solvers/ differ from what experiments.yaml generates
	$(PY) tools/make_nets.py --check

FETCH_SOURCE := $(if $(DATA),--from $(DATA))

data: venv ## Fetch the paper's image sets and the validation images into data/ (sha256-checked; DATA=DIR copies a local folder)
	$(PY) tools/fetch_datasets.py --paper BSD200-train $(FETCH_SOURCE)

h5: setup data ## Build the x2, x3 and x4 training databases data/h5/x{2,3,4}/
	for s in 2 3 4; do $(PY) tools/make_h5.py --scale $$s || exit 1; done

SCALE ?= 2 3 4
REPRODUCE_ARGS := --scale $(SCALE) --gpu $(or $(GPU),0) $(if $(DATA),--data $(DATA)) $(if $(filter 1,$(FORCE)),--force)

reproduce: setup ## Table 3: train DDSR x2/x3/x4 on GPU 0 and evaluate (reports/reproduce/); SCALE="3" for one
	$(PY) tools/reproduce.py $(REPRODUCE_ARGS)

reproduce-ablations: setup ## Also Tables 1 and 2 and Fig. 5 (x3 ablations, 8 more trainings)
	$(PY) tools/reproduce.py $(REPRODUCE_ARGS) --ablations

official: setup ## Import the official SRCNN and FSRCNN weights into models/ (sha256-checked; MODELS=DIR copies a local folder)
	$(PY) tools/import_official.py --out models/ $(if $(MODELS),--from $(MODELS))

baselines: official data ## Evaluate bicubic, SRCNN and FSRCNN on Set5, Set14, BSD200 and print their Table 3
	$(PY) tools/eval.py --model 'models/srcnn_x{scale}_deploy.prototxt' --weights 'models/srcnn_x{scale}.caffemodel' \
		--scale 2 3 4 --out runs/eval/srcnn --no-images
	$(PY) tools/eval.py --model 'models/fsrcnn_x{scale}_deploy.prototxt' --weights 'models/fsrcnn_x{scale}.caffemodel' \
		--scale 2 3 4 --out runs/eval/fsrcnn --no-images --no-baseline
	$(PY) tools/make_table.py runs/eval/srcnn runs/eval/fsrcnn --published-only A+ SRF DDSR

eval-bicubic: venv data ## The bicubic rows of Table 3 (runs/eval/bicubic/)
	$(PY) tools/eval.py --method bicubic --scale 2 3 4 --sets Set5 Set14 BSD200 --out runs/eval/bicubic

bench: setup data ## Run the benchmarks and rewrite docs/benchmarks.md
	$(PY) bench/bench_make_h5.py --data-root data
	$(PY) bench/bench_eval.py --data-root data
	$(PY) bench/bench_ifc.py
	$(PY) bench/bench_upscale.py

check-cuda: venv ## Compile and link Caffe with CUDA and cuDNN (needs nvcc, no GPU); CUDA_ARCH="90" for fewer architectures, CUDNN=0 without cuDNN
	tools/check_cuda_build.sh --python $(PY) --jobs $(JOBS) $(if $(CUDA_ARCH),--cuda-arch "$(CUDA_ARCH)") $(if $(filter 0,$(CUDNN)),--no-cudnn)

check-gpu: venv ## With an NVIDIA GPU and the CUDA build (setup CUDA=1): CPU/GPU parity, timings, reports/gpu/report.md; exit 2 without a GPU
	@$(PY) tools/check_gpu.py --out reports/gpu
