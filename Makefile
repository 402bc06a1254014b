# calltag: `make demo` and `make test` work on a fresh machine (they create .venv and install).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | sha256sum | cut -c1-12)

.PHONY: install test demo bench rules-check clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -c "from pathlib import Path; from service.speech import ensure_bundled_model; print('model:', ensure_bundled_model(Path('data')))"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m service rules check --strict rules
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) scripts/demo.py

bench: $(STAMP)
	$(PY) bench/asr.py
	$(PY) bench/rules_accuracy.py
	$(PY) bench/rules_speed.py

rules-check: $(STAMP)
	$(PY) -m service rules check rules

clean:
	rm -rf $(VENV) data .pytest_cache
