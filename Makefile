# Two entry points, each does its own set-up: `make bench` (main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test test-slow lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# the main job is one slice of `sessa bench paper` (same folder: the full study later resumes from it)
bench: $(STAMP)
	$(VENV)/bin/sessa bench paper --parts diffuse_mqar --seeds 0 --models sessa,attention,llama,mamba2,sessa-nofb \
		--out bench_paper

# pytest exits 5 when a marker deselects everything: that is not a failure here.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
