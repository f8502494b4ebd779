# Two commands do everything: `make repro` (set up + run the pipeline) and `make test`.
PYTHON ?= python3
# GPU=1 (make setup GPU=1, make repro GPU=1, ...): TensorFlow with CUDA from the package registry, in a
# venv of its own, as requirements-gpu.lock pins it. Without it, the CPU build of requirements.lock.
ifdef GPU
VENV := .venv-gpu
LOCK := requirements-gpu.lock
else
VENV := .venv
LOCK := requirements.lock
endif
BIN := $(VENV)/bin
# dvc.yaml's commands call `python`: the venv's must come first, as after `source .venv/bin/activate`.
IN_VENV := PATH="$(CURDIR)/$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"

.PHONY: repro test test-fast bench bench-fast bench-folder bench-inference predict collect report setup lock clean-venv

repro: $(VENV)/.installed
	$(IN_VENV) dvc repro

# Everything, end-to-end tests included, on two workers (11 to 21 minutes on 2 cores, an emulated CPU's
# training included where qemu-user is installed; docs/performance.md has the machines).
test: $(VENV)/.installed
	$(IN_VENV) python -m pytest

# The tests that need no `dvc` pipeline run (about a minute).
test-fast: $(VENV)/.installed
	$(IN_VENV) python -m pytest -m "not e2e"

# Finished experiments from `dvc exp show` into the committed records, reports/runs.csv.
collect: $(VENV)/.installed
	$(IN_VENV) python -m tools.collect

# Tables and the picture in reports/, from reports/runs.csv alone (README: Experiments).
report: $(VENV)/.installed
	$(IN_VENV) python -m tools.report

# Speed and memory, as ratios measured in one run: full data for the README, fast for a quick check.
bench: $(VENV)/.installed
	$(IN_VENV) python -m bench.run --mode full

bench-fast: $(VENV)/.installed
	$(IN_VENV) python -m bench.run --mode fast

# Peak memory of prepare and a student epoch on a 100,000-image folder dataset (about 10 minutes).
bench-folder: $(VENV)/.installed
	$(IN_VENV) python -m bench.folder_memory

# Size, latency and throughput of every exported model and format (after `make repro`).
bench-inference: $(VENV)/.installed
	$(IN_VENV) python -m bench.inference

# Classifies an image with the exported distilled student: make predict IMG=shoe.png
predict: $(VENV)/.installed
	$(IN_VENV) python -m tools.predict $(IMG)

setup: $(VENV)/.installed

# The stamp is rebuilt whenever the lock changes, so a pulled lock reinstalls.
$(VENV)/.installed: $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --requirement $(LOCK)
	touch $@

# Regenerates both locks' exact pins from pyproject.toml; run after changing dependencies. Each lock
# keeps the pins it had where they still fit, so the two differ only in TensorFlow's build.
lock: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet pip-tools==7.6.2
	$(BIN)/pip-compile --quiet --strip-extras --extra cpu --extra test --no-emit-find-links \
		--no-emit-index-url --output-file requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --strip-extras --extra gpu --extra test --no-emit-find-links \
		--no-emit-index-url --output-file requirements-gpu.lock pyproject.toml

clean-venv:
	rm -rf .venv .venv-gpu
