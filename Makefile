# Every target creates .venv on first use and installs what it needs: `make demo` and `make test`
# work on a fresh clone with nothing but python3. Each set of extras has its own stamp, so
# `make demo` installs only the demo's, and a later `make test` adds the rest.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

VENV_STAMP := $(VENV)/.created
DEMO_STAMP := $(VENV)/.demo-installed
# everything: the tests, the notebooks, lint, the benchmarks (the name other tools know)
TEST_STAMP := $(VENV)/.installed

DEMO_EXTRAS := demo
TEST_EXTRAS := dev,cookbook,redis,bedrock,vertex

.PHONY: demo test test-fast lint bench notebooks clean

$(VENV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $(VENV_STAMP)

$(DEMO_STAMP): pyproject.toml $(VENV_STAMP)
	@$(PY) .ci/extras.py $(DEMO_EXTRAS)
	$(PY) -m pip install --quiet -e ".[$(DEMO_EXTRAS)]"
	touch $(DEMO_STAMP)

$(TEST_STAMP): pyproject.toml $(VENV_STAMP)
	@$(PY) .ci/extras.py $(TEST_EXTRAS)
	$(PY) -m pip install --quiet -e ".[$(TEST_EXTRAS)]"
	touch $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/claude-relay demo

test: $(TEST_STAMP)
	@command -v redis-server >/dev/null 2>&1 || echo "make test: redis-server is not installed, so the fleet tests will be skipped (apt-get install redis-server to run them; .ci/run installs it)"
	$(PY) -m pytest -q

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -x -p no:randomly tests/unit_tests

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check langchain_claude_relay tests
	$(VENV)/bin/ruff format --check langchain_claude_relay tests
	@# mypy checks against the venv's Python (langchain-core 1.8 is 3.11+ only); .ci/other_pythons
	@# checks against 3.10 in a 3.10 environment (pyproject's python_version).
	$(VENV)/bin/mypy --python-version $$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

bench: $(TEST_STAMP)
	$(VENV)/bin/claude-relay bench --json benchmarks/results.json --chart benchmarks/results.png

# Re-execute every cookbook notebook and store its outputs (what tests/cookbook compares to).
notebooks: $(TEST_STAMP)
	$(PY) tests/cookbook/refresh.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
