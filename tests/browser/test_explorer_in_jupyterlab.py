"""Notebook 10's explorer in a real browser: JupyterLab + headless Chromium, driven by Playwright.

nbval runs the notebooks on the kernel side only; the widgets' JavaScript never runs there. A student
who opens notebook 10 in JupyterLab and sees "Error displaying widget", or sliders that change
nothing, is not caught by any other test. This one:

1. copies notebooks/10_explorer.ipynb into a temporary folder (the committed notebook is never
   touched) and starts JupyterLab there on 127.0.0.1, a free port and a random token, with
   SIPMASK_FAST=1 and SIPMASK_REPO pointing at this checkout, so the kernel reuses the fast-mode
   checkpoints in outputs/tutorial/ (`make test` runs nbval first, which trains them; alone, the first
   run trains them, a few minutes on 2 cores);
2. opens the notebook in Debian's Chromium (/usr/bin/chromium, not a browser downloaded by
   Playwright), runs all cells, and waits until the kernel is done;
3. checks that the explorer's widgets rendered (sliders, menus, the output with a figure) and that
   the page shows no widget error and no Python traceback;
4. moves two controls as a user does (the `pruning` menu, then the `threshold` slider with the
   keyboard) and checks that each time the figure's PNG and the line of text change.

Screenshots (before.png, after_pruning.png, after_threshold.png, and failure.png if it fails), the
JupyterLab log and the browser console go to outputs/browser_test/ (ignored by git; the path is printed),
and stay there whether the test passes or fails.

Without Chromium or Playwright the test is skipped with the reason; with SIPMASK_BROWSER_REQUIRED=1
(CI sets it) it fails instead. `make browser-test` installs Chromium (apt-get, as root) and runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:  # the dev extra installs it; without it the test skips (or fails in CI), see browser_tools
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

NOTEBOOK = "10_explorer.ipynb"
CHROMIUM = "/usr/bin/chromium"  # Debian's package `chromium`
REQUIRED_ENV = "SIPMASK_BROWSER_REQUIRED"  # "1": a missing browser is a failure, not a skip (CI)
# Flags for a closed network and a fresh profile: without the background-networking ones Chromium
# keeps trying to reach Google's servers and the sandboxed network refuses the connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Text that ipywidgets or JupyterLab shows in place of a widget or an output that failed.
ERROR_TEXTS = ["Error displaying widget", "Error rendering", "model not found", "Traceback"]
SERVER_START_S = 60  # JupyterLab answering on its port
RUN_ALL_S = 150  # the notebook's cells, fast mode with the checkpoints trained: 30-50 s on 2 busy cores
# ... and when the kernel must first generate the data and train them (make browser-test alone on a
# clean clone): about 5 min on 2 busy cores
RUN_ALL_UNTRAINED_S = 900
# The notebook's two models in fast mode (workspace.model_dir): trained, or not yet
CHECKPOINTS = ("outputs/tutorial/cpu_tiny_fast", "outputs/tutorial/cpu_tiny_1x1_fast")
WIDGET_CHANGE_S = 60  # one widget change: a forward pass is cached, so a render (~1-3 s)


def _skip_or_fail(reason: str) -> None:
    """Skip with the reason; under SIPMASK_BROWSER_REQUIRED=1 (CI) fail with it."""
    if os.environ.get(REQUIRED_ENV, "").strip() not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRED_ENV} is set, so the browser test must run)")
    pytest.skip(reason)


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_server(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll JupyterLab's API until it answers; fail with the end of its log if it exits or times out."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}; its log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(
        f"JupyterLab did not answer {url} within {SERVER_START_S} s; its log:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture
def browser_tools() -> None:
    """Skip (or, in CI, fail) before anything starts when Chromium, Playwright or JupyterLab is missing."""
    if not Path(CHROMIUM).is_file():
        _skip_or_fail(f"{CHROMIUM} not found: install Debian's chromium (`make browser-test` does, as root)")
    if sync_playwright is None:
        _skip_or_fail("playwright is not installed: pip install -c constraints.txt -e '.[dev]'")
    if importlib.util.find_spec("jupyterlab") is None:
        _skip_or_fail("jupyterlab is not installed: pip install -c constraints.txt -e '.[dev]'")


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """outputs/browser_test/ under the repository root, emptied of the previous run's files."""
    folder = request.config.rootpath / "outputs" / "browser_test"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    print(f"\nbrowser test artifacts (screenshots, logs): {folder}")
    return folder


@pytest.fixture
def jupyterlab(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[str]:
    """JupyterLab serving a temporary copy of notebook 10; yields the notebook's URL (with the token)."""
    root = request.config.rootpath
    with tempfile.TemporaryDirectory(prefix="sipmask_browser_") as tmp:
        work = Path(tmp)
        notebooks = work / "notebooks"
        notebooks.mkdir()
        shutil.copy(root / "notebooks" / NOTEBOOK, notebooks / NOTEBOOK)
        # A fresh Jupyter configuration, so that nothing of this machine's user settings takes part;
        # JupyterLab's news and update checks are off (the network is closed, and their pop-up would
        # cover the screenshots).
        settings = work / "lab_settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        env = dict(os.environ)
        env.update(
            SIPMASK_FAST="1",
            SIPMASK_REPO=str(root),
            PYTHONPATH=os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p),
            JUPYTER_CONFIG_DIR=str(work / "config"),
            JUPYTER_DATA_DIR=str(work / "data"),
            JUPYTER_RUNTIME_DIR=str(work / "runtime"),
            IPYTHONDIR=str(work / "ipython"),
        )
        env.pop("MPLBACKEND", None)  # the notebook's %matplotlib inline decides
        port, token = _free_port(), os.urandom(16).hex()
        log = artifacts / "jupyterlab.log"
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={notebooks}",
            f"--LabApp.user_settings_dir={work / 'lab_settings'}",
            f"--LabApp.workspaces_dir={work / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run all cells, read kernel state
            "--LabApp.extension_manager=readonly",  # no look-ups on PyPI (the network may be closed)
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI containers run as root
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=notebooks
            )
            try:
                _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", process, log)
                yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}"
            finally:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# JavaScript run in the page. JupyterLab's app (exposed by --LabApp.expose_app_in_browser) runs the
# cells; the widgets themselves are only ever touched through the DOM, as a user would.
RUN_ALL_JS = """async () => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    await panel.context.ready;
    await panel.sessionContext.ready;
    await app.commands.execute('notebook:run-all-cells');
}"""
# Done: the kernel is idle and no code cell is waiting or running ("[*]").
RUN_DONE_JS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    if (!kernel || kernel.status !== 'idle') return false;
    const prompts = [...panel.node.querySelectorAll('.jp-InputArea-prompt')].map(p => p.textContent);
    return prompts.length > 0 && !prompts.some(p => p.includes('*'));
}"""


def _explorer_state(page: Any) -> dict[str, str]:
    """The explorer's output widget: its line of text and the src (a PNG data URL) of its figure."""
    output = page.locator(".widget-output").last
    return {
        "text": output.locator(".jp-RenderedText").first.inner_text(),
        "png": output.locator("img").first.get_attribute("src") or "",
    }


def _wait_for_change(page: Any, before: dict[str, str], what: str) -> dict[str, str]:
    """The explorer's state once both its figure and its text differ from `before`."""
    deadline = time.monotonic() + WIDGET_CHANGE_S
    while time.monotonic() < deadline:
        try:
            now = _explorer_state(page)
        except Exception:  # noqa: BLE001 - the output is being cleared and redrawn: look again
            now = before
        if now["png"] and now["png"] != before["png"] and now["text"] != before["text"]:
            return now
        page.wait_for_timeout(250)
    pytest.fail(f"after {what}, the explorer's figure and text did not change within {WIDGET_CHANGE_S} s")


def _screenshot(explorer: Any, path: Path) -> None:
    """A screenshot of the explorer once its figure is decoded and laid out (else it may come out cut)."""
    explorer.locator(".widget-output img").first.evaluate("img => img.decode()")
    explorer.scroll_into_view_if_needed()
    explorer.page.wait_for_timeout(300)  # JupyterLab's notebook settles its scroll position
    explorer.screenshot(path=path)


def _assert_no_errors(page: Any, where: str) -> None:
    """No widget error, no failed output and no Python traceback anywhere on the page."""
    text = page.locator("body").inner_text()
    for error in ERROR_TEXTS:
        assert error not in text, f"{where}: the page shows {error!r}"
    failed = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]')
    assert failed.count() == 0, f"{where}: a cell raised: {failed.first.inner_text()[:2000]}"


def test_explorer_widgets_render_and_respond(
    browser_tools: None, jupyterlab: str, artifacts: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    run_all_s = RUN_ALL_S
    if not all((request.config.rootpath / folder).is_dir() for folder in CHECKPOINTS):
        run_all_s = RUN_ALL_UNTRAINED_S
        print("the fast-mode checkpoints are not trained yet: the notebook trains them first (minutes)")
    with tempfile.TemporaryDirectory(prefix="sipmask_chromium_") as profile, sync_playwright() as playwright:
        # A fresh profile (Playwright passes it as --user-data-dir), Debian's Chromium, our flags.
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000}
        )
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        try:
            page.goto(jupyterlab)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=SERVER_START_S * 1000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget")
            page.evaluate(RUN_ALL_JS)
            page.wait_for_function(RUN_DONE_JS, timeout=run_all_s * 1000, polling=500)
            print(f"notebook run in the browser: {time.monotonic() - started:.0f} s")

            # The explorer: two sliders above three controls above an output with a figure.
            explorer = page.locator(".widget-vbox").last
            explorer.locator(".widget-output img").first.wait_for(timeout=WIDGET_CHANGE_S * 1000)
            labels = explorer.locator(".widget-label").all_inner_texts()
            for name in ("image", "instance", "model", "pruning", "threshold"):
                assert name in labels, f"the explorer has no {name!r} control; its labels: {labels}"
            _assert_no_errors(page, "after running all cells")
            before = _explorer_state(page)
            assert before["png"].startswith("data:image/png"), "the explorer's figure is not a PNG"
            assert "pruned 2x2 (real)" in before["text"], before["text"]
            pruning = explorer.locator(".widget-dropdown", has=page.locator("label", has_text="pruning"))
            shown = pruning.locator("select").evaluate("menu => menu.selectedOptions[0]?.text ?? ''")
            shown = shown.replace("\xa0", " ")  # ipywidgets writes the options' spaces as no-break spaces
            assert shown == "model's own (real)", f"the pruning menu shows {shown!r}"
            _screenshot(explorer, artifacts / "before.png")

            # A menu: pruning with the thought-experiment 3x3 grid (nine sub-region maps).
            pruning.locator("select").select_option(label="3x3")
            after_pruning = _wait_for_change(page, before, "choosing pruning 3x3")
            assert "pruned 3x3 (thought experiment)" in after_pruning["text"], after_pruning["text"]
            _assert_no_errors(page, "after choosing pruning 3x3")
            _screenshot(explorer, artifacts / "after_pruning.png")

            # A slider, with the keyboard: threshold 0.40 -> 0.45.
            threshold = explorer.locator(".widget-slider", has=page.locator("label", has_text="threshold"))
            threshold.locator(".noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            after_threshold = _wait_for_change(page, after_pruning, "moving the threshold slider")
            assert "at threshold 0.45" in after_threshold["text"], after_threshold["text"]
            _assert_no_errors(page, "after moving the threshold slider")
            _screenshot(explorer, artifacts / "after_threshold.png")
            print(f"browser test: {time.monotonic() - started:.0f} s")
        except BaseException:
            page.screenshot(path=artifacts / "failure.png", full_page=True)
            raise
        finally:
            (artifacts / "console.log").write_text("\n".join(console) + "\n")
            browser.close()
