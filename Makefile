# Two commands for a fresh machine; each creates the virtual environment when it is missing.
#   make quickstart   run recipes/quickstart.yaml (offline, on generated IBL sessions)
#   make test         run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.neds-installed

.PHONY: install quickstart test bench clean

install: $(STAMP)

# torch first, alone: pinned to the CPU build so nothing else pulls a multi-GB CUDA one.
$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt -e '.[test,tune]'
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/neds-run recipes/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_binning.py
	$(BIN)/python benchmarks/bench_train_step.py
	$(BIN)/python benchmarks/bench_quickstart.py
	$(BIN)/python benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) runs data/generated
