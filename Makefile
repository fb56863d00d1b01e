# The two commands: `make demo` (the whole pipeline on the embedded demo) and
# `make test` (the test suite). Both create the environment first if missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo test env report clean-demo

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: env
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml --report results/report.html --report-after-run

test: env
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf results logs .snakemake
