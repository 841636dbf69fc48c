# The README's two commands: `make demo` (run the whole job locally) and `make test`.
# Both set themselves up on a fresh machine: venv, Python deps, Kafka jars, Redis, topics.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: venv lock lint tools test bench chaos demo image image-test stack-up stack-down clean

# The venv holds exactly the versions in constraints.txt (see its header).
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test,sandbox]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# Re-resolve pyproject.toml's ranges in a scratch venv and pin what comes out.
lock:
	@rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install -q --upgrade pip
	$(VENV)-lock/bin/pip install -q -e '.[test,sandbox]'
	@{ sed -n '/^#/p' constraints.txt; $(VENV)-lock/bin/pip freeze --exclude-editable; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt && rm -rf $(VENV)-lock
	@echo "constraints.txt re-pinned: review the diff and run make test"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# helm (built from the Go module proxy) and the CRD / Compose schemas, cached in ~/.cache.
tools: venv
	$(BIN)/python -m tests.tools install

# Lint, then the stack (fresh broker data), then pytest. The stack comes down even when
# tests fail, and the exit code is pytest's.
test: lint tools
	@$(BIN)/m2e-sync stack up --fresh || { $(BIN)/m2e-sync stack down; exit 1; }
	@status=0; $(BIN)/pytest $(PYTEST_ARGS) || status=$$?; \
	  $(BIN)/m2e-sync stack down; exit $$status

# The benchmark suite against the real stack: rewrites bench/RESULTS.md and its pictures,
# bench/MERCHANTS.md (1,000 accounts and what one request costs, bench/many_merchants.py),
# bench/WINDOWS.md (the budget at the server's window, bench/windows.py) and bench/PEER.md
# (Benthos side by side).
bench: venv
	@$(BIN)/m2e-sync stack up || { $(BIN)/m2e-sync stack down; exit 1; }
	@status=0; $(BIN)/python bench/suite.py || status=$$?; \
	$(BIN)/python bench/many_merchants.py --write bench/MERCHANTS.md || status=$$?; \
	$(BIN)/python bench/windows.py --write bench/WINDOWS.md || status=$$?; \
	$(BIN)/python bench/peer.py --write bench/PEER.md || status=$$?; \
	$(BIN)/m2e-sync stack down; exit $$status

# Crashes, broker and Redis restarts and API faults during a 100,000-event run; exits 1 if
# anything is lost (the fast part runs in make test: tests/integration/test_chaos.py).
chaos: venv
	@$(BIN)/m2e-sync stack up || { $(BIN)/m2e-sync stack down; exit 1; }
	@status=0; $(BIN)/python bench/chaos.py || status=$$?; $(BIN)/m2e-sync stack down; exit $$status

demo: venv
	$(BIN)/m2e-sync demo

# The worker image with podman (runc, cgroupfs) on a Debian base made with mmdebstrap;
# image-test runs every worker in it as the chart does (also part of make test).
image: venv
	$(BIN)/python -m m2e_devtools.image

image-test: venv
	@$(BIN)/m2e-sync stack up || { $(BIN)/m2e-sync stack down; exit 1; }
	@status=0; $(BIN)/pytest -s tests/image || status=$$?; $(BIN)/m2e-sync stack down; exit $$status

stack-up: venv
	$(BIN)/m2e-sync stack up

stack-down: venv
	$(BIN)/m2e-sync stack down

clean: stack-down
	rm -rf $(VENV) $(VENV)-lock .pytest_cache .mypy_cache .ruff_cache
