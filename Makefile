# The two commands: `make demo` (the whole pipeline on the embedded demo) and
# `make test` (the test suite); `make gpu-check` runs every GPU code path for a
# few steps (README, "Checking the GPU paths"). Each creates the environment
# first if missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo demo-four-sequences test gpu-check env report clean-demo

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: env
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml --report results/report.html --report-after-run

# The study on four sequences (t1n, t1c, t2w, t2f; healthy T1 + T2), in its
# own working directory so that it leaves the T1-only demo's results alone.
FOUR := demo_four_sequences

demo-four-sequences: env
	$(BIN)/snakemake --cores $(CORES) --directory $(FOUR) --configfile config/demo_four_sequences.yaml --report results/report.html --report-after-run

# Two workers (pytest-xdist), each test file whole on one of them (its module
# fixtures made once); a random order each run (pytest-randomly: the seed is
# printed; `--randomly-seed=N` repeats an order, `-p no:randomly` keeps the files' order).
TEST_WORKERS ?= 2

test: env
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Its options go in GPU_CHECK_ARGS, e.g. GPU_CHECK_ARGS="--markdown results/gpu_check.md --deterministic".
gpu-check: env
	$(BIN)/python -m tumorfab.gpu_check $(GPU_CHECK_ARGS)

clean-demo:
	rm -rf results logs .snakemake $(FOUR)
