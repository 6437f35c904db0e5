# Two commands for a fresh machine; each creates the virtual environment when it is missing.
#   make quickstart   run recipes/quickstart.yaml (offline, on generated IBL sessions)
#   make test         run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.neds-installed

.PHONY: install quickstart test bench bench-quick clean

install: $(STAMP)

# torch first, alone: pinned to the CPU build so nothing else pulls a multi-GB CUDA one.
$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt -e '.[test,tune]'
	# BrainWideBench's scorer pins torch 2.10 and numpy 2.2.6 exactly; its code runs on this set, so no deps.
	$(BIN)/python -m pip install --quiet --no-deps ibl-bwb-eval==0.1.0
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/neds-run recipes/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The whole benchmark suite (hours on 2 cores; benchmarks/results/suite/); bench-quick: minutes.
bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) runs data/generated
