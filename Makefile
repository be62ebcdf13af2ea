# Two commands: `make run` starts the system, `make test` runs the tests.
# Both create the virtual environment they need in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/kenshin up --broute-meters 3

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Each script appends its figures to BENCH_JSON; report.py prints them as one table with the
# commit and machine. mqtt_ingest.py needs Mosquitto and PostgreSQL on 127.0.0.1.
BENCH_JSON ?= build/bench.jsonl

bench: $(STAMP)
	@mkdir -p $(dir $(BENCH_JSON)) && rm -f $(BENCH_JSON)
	$(BIN)/python benchmarks/simulate.py --million --json $(BENCH_JSON)
	$(BIN)/python benchmarks/aroute_decode.py --json $(BENCH_JSON)
	$(BIN)/python benchmarks/aroute_slo.py --json $(BENCH_JSON)
	$(BIN)/python benchmarks/mqtt_ingest.py --json $(BENCH_JSON)
	$(BIN)/python benchmarks/hostile_envelopes.py --json $(BENCH_JSON)
	$(BIN)/python benchmarks/fleet_reports.py --json $(BENCH_JSON)
	$(BIN)/python benchmarks/estimation.py --json $(BENCH_JSON)
	$(BIN)/python benchmarks/report.py $(BENCH_JSON)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
