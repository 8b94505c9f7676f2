"""A learner's session in a real browser: JupyterLab started as `make lab` starts it, every course notebook
and lab opened and run through the UI (Run > Run All Cells, fast mode), the memory calculator's widgets
changed by hand. Headless Chromium driven by playwright.

Needs the `playwright` package (in the dev pins) and a system Chromium (`apt-get install chromium`;
`.ci/run` installs it as root; `playwright install` cannot download browsers on these machines). Without
them the tests are skipped and say why -- they never pass without a browser.

Nothing here touches the committed notebooks: JupyterLab serves a temporary copy of the working tree (the
repository's .venv linked in), so running, autosaving and saving only change the copies. Screenshots go to
build/screenshots/ for a human to look at, with timings.txt (seconds per notebook, cells run, figures).

Time: nbval already runs every cell of every notebook in fast mode, and one notebook through the UI costs
15-40 s on two cores, so `make test` runs a representative set (BROWSER_SET: the welcome notebook, the
memory notebook with its calculator, lab 01 as a student gets it and its solutions); `make test-browser`
(COURSE_BROWSER_ALL=1) runs every notebook and lab. The expensive notebooks (more than BROWSER_FULL_MINUTES
minutes in the course map, full mode on a CPU) run in part: the set-up, the imports and the sections up to
their first figure (COURSE_BROWSER_FULL=1 runs every cell of every notebook).
"""

import json
import os
import re
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
SHOTS = ROOT / "build" / "screenshots"
NOTEBOOKS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "labs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
# In make test: the first notebook a learner opens, the interactive calculator, a lab and its solutions.
BROWSER_SET = ("notebooks/00_welcome_and_setup.ipynb", "notebooks/03_memory_arithmetic.ipynb",
               "labs/01_memory_budget.ipynb", "labs/solutions/01_memory_budget_solutions.ipynb")
BROWSER_FULL_MINUTES = 2  # notebooks longer than this (full mode, course map) run up to their first figure
RUN_TIMEOUT_S = int(os.environ.get("COURSE_BROWSER_TIMEOUT", 1800))  # one notebook, Run All to idle
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
# Copied into the served tree: everything but the repository's history, environments, caches and outputs.
NOT_COPIED = {".git", ".venv", "build", ".whl", ".gpu-models", ".site", ".pytest_cache", ".ruff_cache",
              ".hypothesis", ".course_cache", "__pycache__", ".ipynb_checkpoints"}


def _chromium():
    for name in (os.environ.get("COURSE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


def _skip_reason():
    if os.environ.get("COURSE_NO_BROWSER"):  # set by .ci/run when it could not install Chromium
        return os.environ["COURSE_NO_BROWSER"]
    if _chromium() is None:
        return "needs Chromium: apt-get install chromium (.ci/run installs it when run as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs the playwright package (pip install playwright; it is in the dev pins)"
    return None


# on the tests that drive a browser (the set's sanity check below needs none, so it runs everywhere)
needs_browser = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _full_mode_minutes(rel_path: str) -> int:
    from utils.course import COURSE_MAP

    return next((lesson.minutes_cpu for lesson in COURSE_MAP if lesson.file == Path(rel_path).name), 0)


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _images(cells) -> int:
    return sum(any(k.startswith("image/") for k in o.get("data", {})) for c in cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`make lab` in a copy of the working tree, on a free port with a token, fast mode; yields (url, token, copy)."""
    copy = tmp_path_factory.mktemp("course") / "course"
    shutil.copytree(ROOT, copy, ignore=lambda d, names: [n for n in names if n in NOT_COPIED or n.startswith(".venv")])
    # The environment running this test (.venv, or .venv-py3.X for another Python) is the copy's .venv,
    # and make runs course.py with its interpreter, so the copy uses exactly this environment.
    (copy / ".venv").symlink_to(Path(sys.prefix))
    port, token = _free_port(), secrets.token_hex(16)
    # A learner's fresh JupyterLab: no user config or workspaces; the news pop-up off (it covers screenshots)
    settings = tmp_path_factory.mktemp("lab-settings")
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # COURSE_NO_INSTALL: the copy links the real .venv; installing from the copy would point the editable
    # install of utils at this temporary folder (a stale .venv is an error here: run make venv first)
    env = {**os.environ, "COURSE_NO_INSTALL": "1", "JUPYTER_TOKEN": token, "COURSE_FAST": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "JUPYTER_CONFIG_DIR": str(tmp_path_factory.mktemp("jupyter-config")),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path_factory.mktemp("lab-workspaces"))}
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in [*SHOTS.glob("*.png"), SHOTS / "timings.txt"]:  # this folder holds only this test's files
        old.unlink(missing_ok=True)
    log = open(tmp_path_factory.mktemp("lab-log") / "lab.log", "w")  # noqa: SIM115 (closed below)
    # -o venv: never (re)build the linked environment from the copy; `make test` has just checked it
    proc = subprocess.Popen(["make", "-s", "-o", "venv", "lab", f"PYTHON={sys.executable}", f"LAB_PORT={port}",
                             "LAB_ARGS=--no-browser"],
                            cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    pytest.fail(f"make lab did not serve JupyterLab: {Path(log.name).read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token, copy
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:  # make lab already exited (its log is in the failure message)
            pass
        proc.wait(timeout=60)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _api(base: str, token: str, path: str, method: str = "GET"):
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return json.loads(body) if body else None


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front
# The run's state: the kernel idle in the status bar, cells executed ([n]) and cells queued or running ([*]).
_STATE_JS = """(panel) => {
  const prompts = [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
  const idle = [...document.querySelectorAll('.jp-StatusBar-TextItem, .jp-StatusBar-Item')]
    .some(e => /\\| Idle/.test(e.textContent));
  return [idle, prompts.filter(t => /\\[\\d+\\]/.test(t)).length, prompts.findIndex(t => t.includes('*'))];
}"""
STALL_S = 180  # an idle kernel with a cell still at [*] this long: the cell's reply was lost, not slow


def _open(page, base: str, token: str, rel: str) -> None:
    page.goto(f"{base}/lab/tree/{rel}?reset&token={token}")  # reset: a fresh workspace
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=300_000)
    assert page.locator("text=Select Kernel").count() == 0, f"{rel}: kernelspec metadata missing"
    page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=600_000)  # the kernel is up (a busy CI)


def _run(page, rel: str, n_code: int, partial: bool) -> None:
    page.locator(f"{PANEL} .jp-Cell").first.click()  # focus the notebook
    if partial:  # select the first code cell not to run, then Run > Run All Above Selected Cell
        page.locator(f"{PANEL} .jp-CodeCell").nth(n_code).locator(".jp-InputPrompt").click()
        _menu(page, "Run", "Run All Above Selected Cell")
    else:
        _menu(page, "Run", "Run All Cells")
    start = time.time()
    idle_since = None  # when the kernel was first seen idle with a cell still queued
    while True:
        idle, executed, queued = page.evaluate(_STATE_JS, PANEL)
        if idle and executed and queued < 0:
            return
        idle_since = (idle_since or time.time()) if idle and queued >= 0 else None
        stalled = idle_since is not None and time.time() - idle_since > STALL_S
        if stalled or time.time() - start > RUN_TIMEOUT_S:
            running = page.locator(f"{PANEL} .jp-CodeCell", has=page.locator(".jp-InputPrompt", has_text="[*]"))
            _shot(page, f"{Path(rel).stem}-timeout.png", running.first if running.count() else None)
            pytest.fail(f"{rel}: code cell {queued} still shows [*] but the kernel has been idle for {STALL_S} s: "
                        "its execution reply never reached JupyterLab" if stalled else
                        f"{rel}: not finished after {RUN_TIMEOUT_S} s (code cell {queued} still queued or running)")
        page.wait_for_timeout(1000)


def _shot(page, name: str, centre=None) -> None:
    if centre is not None:  # scroll the notebook so that this element is in the middle of the window
        centre.evaluate("(e) => e.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / name))


def _shutdown_kernels(base: str, token: str) -> None:
    for s in _api(base, token, "/api/sessions"):
        _api(base, token, f"/api/sessions/{s['id']}", "DELETE")


def test_the_browser_set_names_course_notebooks():
    missing = sorted(set(BROWSER_SET) - set(NOTEBOOKS))
    assert not missing, f"BROWSER_SET names notebooks that do not exist: {missing}"


@pytest.mark.parametrize("rel", NOTEBOOKS if os.environ.get("COURSE_BROWSER_ALL") == "1" else BROWSER_SET)
@pytest.mark.browser
@needs_browser
def test_learner_runs_the_notebook(lab, browser, rel):
    base, token, copy = lab
    committed = json.loads((ROOT / rel).read_text())
    n_code = len(_code_cells(committed))
    partial = _full_mode_minutes(rel) > BROWSER_FULL_MINUTES and os.environ.get("COURSE_BROWSER_FULL") != "1"
    figures = [i for i, c in enumerate(_code_cells(committed)) if _images([c])]
    n_run = figures[0] + 1 if partial and figures else n_code
    stem = Path(rel).stem
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    t0 = time.perf_counter()
    try:
        _open(page, base, token, rel)
        _run(page, rel, n_run, n_run < n_code)
        secs = time.perf_counter() - t0
        # Save (File > Save Notebook) and read back what the learner's run produced.
        _menu(page, "File", "Save Notebook")
        page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.lm-mod-current.jp-mod-dirty')",
                               timeout=120_000)
        ran = _code_cells(json.loads((copy / rel).read_text()))[:n_run]
        errs = [o for c in ran for o in c["outputs"] if o["output_type"] == "error"]
        if errs:  # JupyterLab renders an error as stderr text with IPython's traceback
            tb = page.locator(f'{PANEL} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                              has_text="Traceback")
            if tb.count():
                _shot(page, f"{stem}-error.png", tb.first)
        assert not errs, f"{rel}: " + re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errs[0]["traceback"][-3:]))
        missed = [i for i, c in enumerate(ran) if not c["execution_count"]]
        assert not missed, f"{rel}: code cells {missed} left unexecuted: {''.join(ran[missed[0]]['source'])[:300]}"
        # Figures: every image output the run produced is an <img> that loaded, and there are some
        # wherever the committed (full-mode) run of the same cells has figures.
        shown, loaded = page.evaluate("""([panel, n]) => {
            const imgs = [...document.querySelectorAll(panel + ' .jp-CodeCell')].slice(0, n)
              .flatMap(c => [...c.querySelectorAll('.jp-OutputArea-output img')]);
            return [imgs.length, imgs.filter(i => i.complete && i.naturalWidth > 0).length]; }""", [PANEL, n_run])
        assert shown == _images(ran) == loaded, f"{rel}: {shown} <img>, {_images(ran)} images saved, {loaded} loaded"
        if _images(_code_cells(committed)[:n_run]):
            assert shown > 0, f"{rel}: the committed notebook has figures here, the browser shows none"
            _shot(page, f"{stem}-figure.png", page.locator(f"{PANEL} .jp-OutputArea-output img").first)
        _shot(page, f"{stem}-end.png", page.locator(f"{PANEL} .jp-CodeCell").nth(n_run - 1))
        if re.match(r"notebooks/03_", rel):
            _check_memory_calculator(page, stem)
        with (SHOTS / "timings.txt").open("a") as f:
            f.write(f"{rel}: {secs:.0f} s to run {n_run}/{n_code} code cells through the UI "
                    f"({'part' if n_run < n_code else 'all'}), {shown} figures\n")
    finally:
        page.close()
        _shutdown_kernels(base, token)


def _check_memory_calculator(page, stem: str) -> None:
    """Change every input of notebook 03's interactive calculator and read the new result."""
    from utils.memory import format_bytes, memory_calculator

    calc = page.locator(f"{PANEL} .widget-interact").first
    calc.scroll_into_view_if_needed()
    out = calc.locator(".widget-output, .jp-OutputArea").last

    def shown() -> tuple[str, str]:
        text = out.inner_text()
        total = re.search(r"^total\s+(.+?)\s*$", text, re.M)
        gpus = re.search(r"GPUs needed.*?:\s*(\d+)", text)
        assert total and gpus, f"the calculator shows no total / GPU count: {text!r}"
        return total.group(1), gpus.group(1)

    def expect(**kw) -> tuple[str, str]:
        r = memory_calculator(**kw)
        return format_bytes(r["total"], digits=2), str(r["n_gpus"])

    page.wait_for_function("(el) => /total/.test(el.innerText)", arg=out.element_handle(), timeout=300_000)
    before = shown()
    def dropdown(name):
        return calc.locator(f".widget-dropdown:has(label:text-is('{name}')) select")

    def options(name) -> list[str]:  # ipywidgets writes the labels with non-breaking spaces
        return [o.replace("\xa0", " ") for o in dropdown(name).evaluate("(s) => [...s.options].map(o => o.text)")]

    defaults = {k: options(k)[dropdown(k).evaluate("(s) => s.selectedIndex")]
                for k in ("model", "precision", "optimizer", "seq_len", "recompute", "gpu")}
    batch0 = int(calc.locator(".widget-slider:has(label:text-is('batch_size')) .widget-readout").inner_text())
    default_kw = dict(defaults, seq_len=int(defaults["seq_len"]), batch_size=batch0)
    assert before == expect(**default_kw), (before, default_kw)
    _shot(page, f"{stem}-calculator-before.png", calc)

    new = {"model": "GPT-3 6.7B", "precision": "fp32", "optimizer": "adamw", "seq_len": "4096",
           "recompute": "selective", "gpu": "H100"}
    for k, v in new.items():
        dropdown(k).select_option(index=options(k).index(v))
    readout = calc.locator(".widget-slider:has(label:text-is('batch_size')) .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("16")
    page.keyboard.press("Enter")
    want = expect(**dict(new, seq_len=4096, batch_size=16))
    assert want != before, "the new inputs should change the result"
    page.wait_for_function("([el, t]) => el.innerText.includes(t)", arg=[out.element_handle(), want[0]],
                           timeout=300_000)
    _shot(page, f"{stem}-calculator-after.png", calc)
    assert shown() == want, (shown(), want)
