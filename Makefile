# The two commands of the README: `make demo` and `make test`. Both install first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.roost-installed
PYTHON ?= python3

.PHONY: install test lint demo clean

install: $(STAMP)

# torch 2.13.0 (pinned in constraints.txt) is the CPU build pip finds on this machine's disk.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

demo: install
	$(PY) -m roost.demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
