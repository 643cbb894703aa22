# Every target does its own set-up on a fresh machine: it makes .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-lowest demo examples bench lint clean

# The .pth is copied into site-packages at install (editable too): a new one means reinstall.
$(STAMP): pyproject.toml omnipkg_hook/data/omnipkg_hook.pth
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The oldest dependency versions pyproject.toml allows (ci/constraints-lowest.txt), in a venv
# of their own: a lower bound that is too loose fails here, not for a user.
LOWEST_VENV  ?= .venv-lowest
LOWEST_STAMP := $(LOWEST_VENV)/.installed
LOWEST_TESTS ?= tests/test_interpreters.py tests/test_tags.py tests/test_probe.py tests/test_config_errors.py

$(LOWEST_STAMP): pyproject.toml ci/constraints-lowest.txt
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q -c ci/constraints-lowest.txt pip
	$(LOWEST_VENV)/bin/python -m pip install -q -c ci/constraints-lowest.txt -e '.[test]'
	$(LOWEST_VENV)/bin/python ci/check_lowest.py ci/constraints-lowest.txt
	@touch $@

test-lowest: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/python -m pytest $(PYTEST_ARGS) $(LOWEST_TESTS)

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
	rm -rf $(VENV) $(LOWEST_VENV) build dist .pytest_cache
