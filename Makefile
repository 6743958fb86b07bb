# ddsr-caffe: `make demo` and `make test` are all a new user needs (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CUDA   ?= 0
CUDA_ARCH ?=

INSTALL_CAFFE_ARGS := --python $(PY) --venv $(VENV) --jobs $(JOBS) \
	$(if $(filter 1,$(CUDA)),--cuda) $(if $(CUDA_ARCH),--cuda-arch "$(CUDA_ARCH)")

.PHONY: help setup venv caffe test nets check-nets

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-22s %s\n", $$1, $$2}'

setup: venv caffe ## Debian packages, .venv with the pinned dependencies, BVLC Caffe (cached); CUDA=1 for the GPU build

venv: $(VENV)/.ddsr-requirements
$(VENV)/.ddsr-requirements: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

caffe: venv
	@tools/install_caffe.sh $(INSTALL_CAFFE_ARGS)

test: setup ## Run the test suite (unit tests and integration tests through real Caffe)
	$(PY) -m pytest -q

nets: setup ## Regenerate prototxt/ and solvers/ from experiments.yaml
	$(PY) tools/make_nets.py

check-nets: setup ## Fail if prototxt/ or solvers/ differ from what experiments.yaml generates
	$(PY) tools/make_nets.py --check
