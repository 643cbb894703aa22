# Every target does its own set-up on a fresh machine: it makes .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo examples bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/pip-omni demo --yes

examples: $(STAMP)
	@for f in examples/pin_at_startup.py examples/pin_in_code.py examples/switch_with_using.py examples/ci_pins.py; do \
		echo "== $$f"; $(PY) $$f || exit 1; done

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(PY) -m pip install -q ruff && $(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build dist .pytest_cache
