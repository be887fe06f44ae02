# adautomix: `make run` sets everything up and runs the main job; `make test` runs the test suite.
# Both create the project-local virtual environment .venv first (once; again when pyproject.toml
# changes).

# The main job of `make run`, run with .venv/bin first on PATH.
MAIN_JOB = python tune/run_ablation.py

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
IN_VENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"

.PHONY: run test venv clean-venv

run: venv
	$(IN_VENV) $(MAIN_JOB)

test: venv
	$(IN_VENV) python -m pytest $(PYTEST_ARGS)

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e '.[test]'
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
