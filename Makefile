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
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: install
	$(VENV)/bin/ruff check spicebridge characterization nnsim tests bench

clean:
	rm -rf runs .pytest_cache
