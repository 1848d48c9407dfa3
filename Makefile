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

# Until the main job (graphs + crews on the shared backend) lands, the demo asks the
# embedded default model a question through transformers.
define DEMO_PY
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from roost.models import resolve
from roost.prompts import encode, render_chat
path = resolve("default").base_path
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
question = "What is the capital of France?"
ids = torch.tensor([encode(tok, render_chat(tok, [{"role": "user", "content": question}]))])
out = model.generate(ids, max_new_tokens=40, do_sample=False)
print("Q:", question)
print("A:", tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
endef
export DEMO_PY

demo: install
	$(VENV)/bin/roost pull
	$(PY) -c "$$DEMO_PY"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
