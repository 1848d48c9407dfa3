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

# The main job: pull the default model, start the shared backend, run the multi-agent
# supervisor graph and the CrewAI crew on it with their steps streamed live, show the traces.
DEMO_QUESTION ?= What is 12 * 7, and how do I resume an interrupted run?
DEMO_TOPIC ?= caller tag

demo: install
	$(VENV)/bin/roost pull
	$(VENV)/bin/roost run graphs.supervisor --input "$(DEMO_QUESTION)" --approve -o max_tokens=96
	$(VENV)/bin/roost run agents.crew --input "$(DEMO_TOPIC)" -o max_tokens=96
	$(VENV)/bin/roost traces list --since 15m --limit 20
	@echo "Every call above is in the trace store: run '$(VENV)/bin/roost traces list' to see them again."
	$(VENV)/bin/roost serve --stop

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
