# adautomix: `make run` sets everything up and runs the main job; `make test` runs the test suite
# (what CI runs), `make test-fast` the tests that start no process, cluster or server; `make lint`
# and `make docs` check the code style and build the documentation site.
# Both create the project-local virtual environment .venv first (once; again when pyproject.toml
# changes).

# The main job of `make run`, run with .venv/bin first on PATH.
MAIN_JOB = python tune/run_ablation.py

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
IN_VENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"

.PHONY: run test test-fast lint docs venv clean-venv

run: venv
	$(IN_VENV) $(MAIN_JOB)

test: venv
	$(IN_VENV) python -m pytest $(PYTEST_ARGS)

# The edit-test loop: no Ray cluster, no MLflow store, no subprocess (markers: tests/conftest.py).
test-fast: venv
	$(IN_VENV) python -m pytest -m 'not slow and not cuda and not ray and not mlflow and not e2e' $(PYTEST_ARGS)

lint: venv
	$(IN_VENV) ruff check .

# The documentation site (docs/, mkdocs.yml) into site/; warnings are errors.
docs: $(DOCS_STAMP)
	$(IN_VENV) mkdocs build --strict

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e '.[test]'
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -e '.[test,docs]'
	touch $(DOCS_STAMP)

clean-venv:
	rm -rf $(VENV)
