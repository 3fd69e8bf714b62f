# Quick start: `make demo` (prepare data, train, report) and `make test`.
# Each target installs what it needs into .venv first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= data
RUNS ?= runs

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package metadata changes.
$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[data,dev]"
	touch $(STAMP)

install: $(STAMP)

$(DATA)/St.h5 $(DATA)/ms.h5: | $(STAMP)
	$(PY) -m data_prep watch --out $(DATA)

demo: $(STAMP) $(DATA)/St.h5
	$(PY) -m convlstm_tl.train --source St --data-dir $(DATA) --runs-dir $(RUNS) --overwrite

test: $(STAMP)
	$(PY) -m pytest tests -q --durations=15

clean:
	rm -rf $(RUNS) $(DATA) .pytest_cache
