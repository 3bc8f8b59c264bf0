# Two commands do everything on a fresh machine with Python 3.11:  make demo  and  make test.
# Both create .venv if it is missing and install the package into it; the install is
# stamped, so a second run installs nothing and starts at once.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lab data reproduce compare notebooks clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sipmask_ref demo

# Unit tests, then every notebook under nbval (lax: only cells marked # NBVAL_CHECK_OUTPUT are compared).
# SIPMASK_FAST=1 shrinks the notebooks' training runs so that they all fit in a few minutes.
test: $(STAMP)
	$(BIN)/python -m pytest -q tests
	SIPMASK_FAST=1 $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

# The ablation tables (paper Tables 2-5) on the synthetic benchmark, 3 seeds each, into results/.
reproduce: $(STAMP)
	$(BIN)/python -m sipmask_ref reproduce

# Table 1 (speed vs accuracy) on this machine: SipMask, the YOLACT-like baseline and torchvision's
# Mask R-CNN, each trained for the same CPU budget (290 s, 2 threads), into results/speed_accuracy.*.
compare: $(STAMP)
	$(BIN)/python -m sipmask_ref compare

# Re-execute every notebook in place in full mode (the outputs that are committed; about half an hour).
notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=3600 \
		--ExecutePreprocessor.kernel_name=python3 notebooks/*.ipynb

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

data: $(STAMP)
	$(BIN)/python -m sipmask_ref make-data

clean:
	rm -rf data/synthetic data/synthetic_video outputs
