# Quick start: `make demo` (prepare data, train, report), `make test` (`make test-fast` without the slow tests)
# and `make bench`.
# Each target installs what it needs into .venv first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= data
RUNS ?= runs

.PHONY: demo test test-fast bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package metadata changes.
$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[data,dev,baselines,onnx]"
	touch $(STAMP)

install: $(STAMP)

# ms is stored mirrored into right-arm coordinates (ax, wy, wz negated): the
# left arm moves as the mirror image of the right.
$(DATA)/St.h5 $(DATA)/ms.h5: | $(STAMP)
	$(PY) -m data_prep watch --out $(DATA) --mirror-left

# Train on St (right arm; random rotations of the sensor axes stand in for a
# watch worn differently by unseen subjects), transfer to ms (left arm) with
# 10% of its labels by three strategies and one adaptation (the advisor's for a
# small target with the source's classes: the frozen body behind a channel
# adapter started from the sign search, the source's head, and BatchNorm
# statistics re-estimated on ms's unlabelled training windows), fit the
# classical baselines on the same files and the same 10%
# (St-ms-baselines), then score every run on both domains, the baselines
# beside them.
DEMO_STRATEGIES ?= freeze finetune scratch
DEMO_FRACTION ?= 0.1
DEMO_ADAPTATION ?= --strategy freeze --adapter channel --adapter-init signs --head-init source --adapt adabn
DEMO_ADAPTATION_RUN ?= St-ms-freeze-adapter-adabn

demo: $(STAMP) $(DATA)/St.h5
	$(PY) -m convlstm_tl.train --source St --augment-rotate 90 --data-dir $(DATA) --runs-dir $(RUNS) --overwrite
	for strategy in $(DEMO_STRATEGIES); do \
	  $(PY) -m convlstm_tl.train --transfer ms --from St --strategy $$strategy --target-fraction $(DEMO_FRACTION) \
	    --data-dir $(DATA) --runs-dir $(RUNS) --overwrite --quiet || exit 1; \
	done
	$(PY) -m convlstm_tl.train --transfer ms --from St $(DEMO_ADAPTATION) --target-fraction $(DEMO_FRACTION) \
	  --name $(DEMO_ADAPTATION_RUN) --data-dir $(DATA) --runs-dir $(RUNS) --overwrite --quiet
	$(PY) -m convlstm_tl.baseline --source St --target ms --target-fraction $(DEMO_FRACTION) \
	  --data-dir $(DATA) --runs-dir $(RUNS) --overwrite --quiet
	$(PY) -m convlstm_tl.evaluate --runs St $(addprefix St-ms-,$(DEMO_STRATEGIES)) $(DEMO_ADAPTATION_RUN) \
	  St-ms-baselines --domains St ms \
	  --data-dir $(DATA) --runs-dir $(RUNS) --out $(RUNS)/evaluation-demo

test: $(STAMP)
	$(PY) -m pytest tests -q --durations=15

# Everything but the tests marked slow (those train models or convert real data).
test-fast: $(STAMP)
	$(PY) -m pytest tests -q -m "not slow" --durations=10

# The fast ConvLSTM layer against keras.layers.ConvLSTM2D, and the HDF5 data
# path (writes and deletes a temporary file of about 6.5 GB). BENCH_ARGS=--quick
# for a reduced run; BENCH_ARGS="--json bench.json" to keep the figures.
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m convlstm_tl.bench $(BENCH_ARGS)

clean:
	rm -rf $(RUNS) $(DATA) .pytest_cache
