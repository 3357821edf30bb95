# One entry point for every task. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test lint typecheck unit integration bench demo clients clients-install venv system clean coverage

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

system:
	./scripts/bootstrap-system.sh

lint: venv
	$(BIN)/ruff check pki tunnel gateway tests bench scripts
	$(BIN)/ruff format --check pki tunnel gateway tests bench scripts

typecheck: venv
	$(BIN)/mypy

test: venv system lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: venv system
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

bench: venv system
	$(BIN)/python -m bench.run

demo: venv system
	$(BIN)/python -m scripts.demo $(if $(ONCE),--once,) $(if $(UPSTREAM),--upstream $(UPSTREAM),)

# The real agents (Claude Code, Codex CLI, Qwen Code, Continue's CLI, the OpenAI Node SDK) from
# the npm registry, exactly as clients/package-lock.json pins them, into .clients/ (not the
# system); then each runs headless against a deployment on loopback (scripts/clients/).
CLIENTS := .clients
$(CLIENTS)/.installed: clients/package.json clients/package-lock.json
	mkdir -p $(CLIENTS)
	cp clients/package.json clients/package-lock.json $(CLIENTS)/
	npm ci --prefix $(CLIENTS) --no-audit --no-fund --loglevel=error
	touch $@

clients-install: $(CLIENTS)/.installed

clients: venv system clients-install
	$(BIN)/python -m scripts.clients $(CLIENTS_ARGS)

clean:
	rm -rf $(VENV) .demo $(CLIENTS) .pytest_cache .mypy_cache .ruff_cache

# Branch coverage of the in-process code (subprocesses such as `connector run` are not traced).
coverage: venv system
	$(BIN)/pytest --cov=tunnel --cov=pki --cov=gateway --cov-branch --cov-report=term-missing:skip-covered $(PYTEST_ARGS)
