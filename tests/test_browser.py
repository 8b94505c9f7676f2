"""JupyterLab renders the course in a real browser (headless Chromium driven by playwright).

Optional: skipped unless the `playwright` package and a Chromium binary are installed
(`pip install playwright` and `apt-get install chromium`; `playwright install` cannot download here).
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    port, token = _free_port(), secrets.token_hex(16)
    args = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}", "--LabApp.news_url=None",
            f"--ServerApp.root_dir={ROOT}"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path_factory.mktemp("jupyter-config"))}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_notebook_renders_with_its_outputs(lab_url, notebook, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    base, token = lab_url
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lab/tree/notebooks/{notebook}?reset&token={token}")  # reset: a fresh workspace
        panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front
        page.wait_for_selector(f"{panel} .jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_selector(f"{panel} .jp-RenderedMarkdown h1", timeout=30_000)
        title = page.inner_text(f"{panel} .jp-RenderedMarkdown h1")
        assert title.startswith(notebook[:2]), title
        page.wait_for_selector(f"{panel} .jp-OutputArea-output", timeout=30_000)  # stored outputs render
        assert page.locator("text=Select Kernel").count() == 0, "kernelspec metadata missing"
        page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=60_000)  # the kernel is up
        page.wait_for_timeout(1000)
        # opening a committed notebook must not modify it (else learners get "save changes?" prompts)
        assert page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty").count() == 0, "the notebook is modified on open"
        page.screenshot(path=str(tmp_path / f"{notebook}.png"))
        browser.close()
