# Every target creates .venv on first use and installs what it needs: `make demo` and `make test`
# work on a fresh clone with nothing but python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[demo,cookbook,dev,redis,bedrock,vertex]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/claude-relay demo

test: $(STAMP)
	@command -v redis-server >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || echo "redis-server could not be installed: the fleet tests will be skipped"
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -p no:randomly tests/unit_tests

lint: $(STAMP)
	$(VENV)/bin/ruff check langchain_claude_relay tests
	$(VENV)/bin/ruff format --check langchain_claude_relay tests
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/claude-relay bench --json benchmarks/results.json --chart benchmarks/results.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
