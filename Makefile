# Two commands do everything on a fresh machine with Python 3.11:  make demo  and  make test.
# Both create .venv if it is missing and install the package into it; the install is
# stamped, so a second run installs nothing and starts at once. The versions are the ones in
# constraints.txt (editing it or pyproject.toml reinstalls). Before a change: make lint.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test browser-test chromium lint format lab data reproduce compare notebooks clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sipmask_ref demo

# Unit tests, then every notebook under nbval (lax: only cells marked # NBVAL_CHECK_OUTPUT are compared),
# then notebook 10's widgets in a real browser (tests/browser/, which `pytest tests` leaves out).
# SIPMASK_FAST=1 shrinks the notebooks' training runs so that they all fit in a few minutes; the
# browser test reuses the fast-mode checkpoints that nbval trained.
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q tests
	SIPMASK_FAST=1 $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/browser

# The browser test alone: JupyterLab runs a copy of notebook 10, Debian's headless Chromium (driven by
# Playwright, from the dev extra) moves its widgets; screenshots in outputs/browser_test/. Alone and
# before any `make test`, the kernel first trains the fast-mode checkpoints (a few minutes).
browser-test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/browser

# Debian's chromium for the browser test, installed with apt-get when missing and run as root. Otherwise
# (or if apt-get fails) the test skips and says why; CI sets SIPMASK_BROWSER_REQUIRED=1 so that there
# a missing browser fails instead.
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "== installing Debian's chromium for the browser test (tests/browser/)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; } \
				|| echo "make: could not install chromium; the browser test will skip" >&2; \
		else \
			echo "make: no $(CHROMIUM) (as root: apt-get install chromium); the browser test will skip" >&2; \
		fi; \
	fi

# The checks to run before a change (CI runs them before make test; config in pyproject.toml and
# jupytext.toml). All four run; the target fails if any of them failed, and names which.
lint: $(STAMP)
	@failed=""; \
	echo "== ruff check: lint rules over sipmask_ref/, tests/, benchmarks/ and the notebooks' .py pairs"; \
	$(BIN)/ruff check . || failed="$$failed ruff-check"; \
	echo "== ruff format --check: every Python file formatted (make format rewrites them)"; \
	$(BIN)/ruff format --check . || failed="$$failed ruff-format"; \
	echo "== notebook pairs: each notebooks/*.ipynb holds the cells of its notebooks/*.py (jupytext)"; \
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_notebook_pairs.py || failed="$$failed notebook-pairs"; \
	echo "== mypy: types of the sipmask_ref package (strict for the paper's files, config, model)"; \
	$(BIN)/mypy || failed="$$failed mypy"; \
	if [ -n "$$failed" ]; then echo "make lint: FAILED:$$failed" >&2; exit 1; fi; \
	echo "make lint: all checks passed"

# Rewrite what can be rewritten: lint fixes, formatting, and each notebook synced with its .py
# (jupytext copies the cells of the file edited last into the other one; outputs stay in the .ipynb).
format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/jupytext --sync notebooks/*.ipynb

# The ablation tables (paper Tables 2-5) on the synthetic benchmark, 3 seeds each, into results/;
# then the leak of the Table 4 runs' 1x1 and 2x2 masks onto same-class neighbours (results/leak.*).
reproduce: $(STAMP)
	$(BIN)/python -m sipmask_ref reproduce
	$(BIN)/python -m sipmask_ref leak

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
