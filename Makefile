# The two commands of the README: `make demo` and `make test`. Both install first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test bench lint clean

install:
	@VENV=$(VENV) bash scripts/install.sh

demo: install
	$(VENV)/bin/spicebridge demo --out runs/demo

test: install
	$(PY) -m pytest -q --ngspice=required $(PYTEST_ARGS)

bench: install
	@mkdir -p bench/results
	@# aihwkit-lightning, for the comparison in bench/nnsim_overhead.py only; it pins torch
	@# 2.13.0, so it goes in without its dependencies (never a runtime or test dependency)
	@$(VENV)/bin/python -c "import aihwkit_lightning" 2>/dev/null || \
	  $(VENV)/bin/python -m pip install -q --no-deps aihwkit-lightning==2.1.0
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: install
	$(VENV)/bin/ruff check spicebridge characterization nnsim imc tests bench

clean:
	rm -rf runs .pytest_cache
