# Two commands do everything on a fresh machine with Python 3.11:  make demo  and  make test.
# Both create .venv if it is missing and install the package into it; the install is
# stamped, so a second run installs nothing and starts at once.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lab data clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sipmask_ref demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

data: $(STAMP)
	$(BIN)/python -m sipmask_ref make-data

clean:
	rm -rf data/synthetic data/synthetic_video outputs
