"""Every notebook has its plain-text pair and the two hold the same cells (jupytext.toml).

notebooks/NN_name.ipynb is what students open and what nbval executes (with its outputs);
notebooks/NN_name.py (jupytext's py:percent format, without metadata) is what a reviewer reads in a
diff. The .py is rendered here from the .ipynb with the repository's jupytext configuration and
compared with the file on disk, so a change made to one of the two and not synced fails.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="jupytext is not installed: pip install -e '.[dev]'")
jupytext_config = pytest.importorskip("jupytext.config")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PAIRED_SOURCES = sorted(NOTEBOOK_DIR.glob("*.py"))


def _config():
    config = jupytext_config.load_jupytext_config(str(NOTEBOOK_DIR))
    assert config is not None, f"no jupytext configuration found for {NOTEBOOK_DIR} (jupytext.toml)"
    return config


def _render(notebook: Path) -> str:
    """The py:percent text of `notebook`, as `jupytext --sync` would write it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat: "Cell is missing an id field" on older notebooks
        return jupytext.writes(jupytext.read(notebook), fmt="py:percent", config=_config())


def test_the_configuration_pairs_notebooks_with_percent_scripts_without_metadata():
    config = _config()
    assert "ipynb,py:percent" in config.formats
    # Re-executing a notebook changes kernel metadata and timings: none of it may reach the .py.
    assert config.notebook_metadata_filter == "-all" and config.cell_metadata_filter == "-all"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 12, f"expected the tutorial notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_and_its_pair_hold_the_same_cells(notebook: Path):
    pair = notebook.with_suffix(".py")
    fix = f"run `jupytext --sync notebooks/{notebook.name}` (or `make format` for every notebook)"
    assert pair.is_file(), f"notebooks/{notebook.name} has no paired notebooks/{pair.name}: {fix}"
    expected = _render(notebook)
    actual = pair.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(),
            actual.splitlines(),
            f"{pair.name} rendered from {notebook.name}",
            f"{pair.name} on disk",
            lineterm="",
            n=1,
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(
            f"notebooks/{notebook.name} and notebooks/{pair.name} hold different cells; {fix}. It copies "
            f"the cells of the file edited last into the other one (the .ipynb keeps its outputs; "
            f"re-execute it if code changed).\n{shown}"
        )


@pytest.mark.parametrize("source", PAIRED_SOURCES, ids=[p.stem for p in PAIRED_SOURCES])
def test_every_paired_source_has_its_notebook(source: Path):
    assert source.with_suffix(".ipynb").is_file(), (
        f"notebooks/{source.name} has no notebooks/{source.stem}.ipynb: delete the .py, or create the "
        f"notebook with `jupytext --sync notebooks/{source.name}`"
    )
