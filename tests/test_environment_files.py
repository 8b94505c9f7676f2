"""The environment files agree: requirements.lock pins exactly, environment.yml mirrors it,
pyproject keeps loose ranges (so Colab keeps its torch), and the Makefile installs the same model packages."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock must pin exactly: {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_torch_to_the_local_cpu_build_version():
    pins = _lock()
    assert pins["torch"] == "2.13.0"
    for pkg in ("transformers", "accelerate", "tokenizers", "bitsandbytes", "nbval", "jupyterlab", "gguf"):
        assert pkg in pins, f"{pkg} missing from requirements.lock"


def test_environment_yml_mirrors_the_lock():
    out = subprocess.run([sys.executable, ROOT / "scripts" / "make_environment_yml.py", "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_pyproject_ranges_are_loose():
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", text, re.S).group(1)
    assert "==" not in deps, "pyproject.toml keeps loose ranges; exact pins belong in requirements.lock"


def test_model_packages_agree():
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_environment_yml import MODEL_PKGS

    makefile = (ROOT / "Makefile").read_text()
    assert f"MODEL_PKGS := {' '.join(MODEL_PKGS)}" in makefile
