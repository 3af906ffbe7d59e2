# The two commands of the README: `make demo` and `make test`. Each sets itself up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/dagster-dbt project prepare-and-package --file cm_pipeline/models/project.py

demo: setup
	$(BIN)/python -m cm_pipeline.demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/push.py

clean:
	-test -x $(BIN)/python && $(BIN)/python -c "from cm_pipeline.warehouse.connection import stop_embedded; stop_embedded()"
	rm -rf $(VENV) .cm_pipeline dbt_project/target dbt_project/logs
