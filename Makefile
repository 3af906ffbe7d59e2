# The two commands of the README, `make demo` and `make test`, and the demo warehouse's helpers. Each sets
# itself up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The demo's ports; also read from the environment (`UI_PORT=3001 make demo` or `make demo UI_PORT=3001`).
UI_PORT      ?= 3000
SANDBOX_PORT ?= 8787
export UI_PORT SANDBOX_PORT

.PHONY: setup demo test lint format bench psql stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/dagster-dbt project prepare-and-package --file cm_pipeline/models/project.py

# The ports are checked first (standard library only), so a busy one is refused before anything is
# installed or started.
demo:
	@$(PYTHON) -m cm_pipeline.demo.ports
	@$(MAKE) --no-print-directory setup
	$(BIN)/python -m cm_pipeline.demo

# Four pytest-xdist workers on two cores: the suite mostly waits (Dagster and dbt processes, the sandbox's
# latency). Tests are handed out one at a time (cm_pipeline_tests/conftest.py, pytest_xdist_make_scheduler).
test: setup
	$(BIN)/python -m pytest -q -n 4

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/push.py

# psql on the demo warehouse (the embedded Postgres under .cm_pipeline/pgdata, started if needed).
psql: $(STAMP)
	$(BIN)/python -m cm_pipeline.demo.warehouse psql

# Stop the embedded Postgres the demo leaves running; its data stays for the next `make demo`.
stop:
	-test -x $(BIN)/python && $(BIN)/python -m cm_pipeline.demo.warehouse stop

# Everything the project created: the virtualenv, the demo's state (warehouse, sandbox state, Dagster
# home, logs), the dbt build output, packaging and cache folders.
clean: stop
	rm -rf $(VENV) .cm_pipeline *.egg-info build dbt_project/target dbt_project/logs dbt_project/dbt_packages \
	  .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
