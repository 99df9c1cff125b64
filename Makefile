# Two entry points: `make app` (set up, prepare the default backbone, start the app) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: app test lint backbone

$(BIN)/activate:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@

backbone: $(VENV)/.installed
	$(BIN)/python -m core models install-default

app: backbone
	$(BIN)/python -m ui.serve --server.address localhost

# `-n auto --dist loadgroup` (pytest-xdist, one worker per core) comes from pyproject.toml's addopts.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
