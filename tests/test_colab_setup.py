"""The Colab set-up cell, simulated against a local clone: no network, a clean virtual environment and home.

The fake ``google.colab`` module makes the cell take its Colab branch; COURSE_REPO_URL points the clone at
this checkout and COURSE_PIP_ARGS keeps pip offline.
"""

import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import notebook_tools as nt  # noqa: E402


def _site_packages() -> str:
    import torch

    return str(Path(torch.__file__).parents[1])


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory):
    """A new venv (with pip) whose only link to the course environment is a .pth line to its
    site-packages: torch & co. are importable (as on Colab), the course package is not."""
    setuptools = pytest.importorskip("setuptools", reason="the offline editable install needs setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} is older than the 77 the course builds with")
    base = tmp_path_factory.mktemp("colab")
    try:
        venv.EnvBuilder(with_pip=True).create(base / "venv")
    except Exception as exc:  # e.g. a Python without ensurepip
        pytest.skip(f"cannot create a virtual environment with pip here: {exc}")
    py = base / "venv" / "bin" / "python"
    # ensurepip's setuptools is older than the one the course builds with; use the environment's.
    subprocess.run([py, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True)
    site = subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True)
    Path(site.strip(), "course_deps.pth").write_text(_site_packages() + "\n")
    fake = base / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text("")
    return base, py


def _has_commits() -> bool:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "HEAD"], capture_output=True)
    return out.returncode == 0


@pytest.mark.skipif(not _has_commits(), reason="needs a git checkout with commits to clone")
def test_setup_cell_fetches_and_installs_without_touching_torch(clean_env):
    base, py = clean_env
    clone = base / "content" / "llm-pretraining-course"
    probe = textwrap.dedent("""
        import google.colab, os, sys, torch
        torch_before = torch.__file__
        exec(compile(open(sys.argv[1]).read(), "setup-cell", "exec"))
        import utils, utils.env
        print("UTILS", utils.__file__)
        print("CWD", os.getcwd())
        print("TORCH_SAME", torch.__file__ == torch_before)
        print("LINE", utils.env.environment_line())
    """)
    (base / "cell.py").write_text(nt.setup_source("notebooks"))
    (base / "probe.py").write_text(probe)
    env = {
        "PATH": os.environ["PATH"], "HOME": str(base), "PYTHONPATH": str(base / "fake"),
        "COURSE_REPO_URL": str(ROOT), "COURSE_CLONE_DIR": str(clone),
        "COURSE_PIP_ARGS": "--no-index --no-build-isolation --disable-pip-version-check",
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run([py, base / "probe.py", base / "cell.py"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    keys = ("UTILS", "CWD", "TORCH_SAME", "LINE")
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.split(" ", 1)[0] in keys)
    assert lines["UTILS"].startswith(str(clone)), "utils must come from the fresh clone"
    assert lines["CWD"] == str(clone / "notebooks")
    assert lines["TORCH_SAME"] == "True", "the set-up cell must not reinstall torch"
    assert (clone / "notebooks" / "00_welcome_and_setup.ipynb").exists()
    # A second run (re-executing the cell) reuses the clone.
    again = subprocess.run([py, base / "probe.py", base / "cell.py"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]


def test_setup_cell_does_nothing_outside_colab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    exec(nt.setup_source("notebooks"), {})
    assert os.getcwd() == str(tmp_path) and sys.path == before
