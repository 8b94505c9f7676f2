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


def _pins(name: str) -> dict:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pkg, _, version = line.partition("==")
            assert version, f"{name} must pin exactly: {line!r}"
            pins[pkg.lower().replace("_", "-")] = version
    return pins


# requirements.lock's pins that have no release for Python 3.10 (Requires-Python >= 3.11, checked with
# pip on 3.10.13): the 3.10 lock has each one's newest 3.10 release instead.
NEEDS_PY311 = {
    "annotated-doc", "contourpy", "coverage", "filelock", "fonttools", "httpcore2", "httpx2", "hypothesis",
    "ipykernel", "ipython", "matplotlib", "networkx", "numpy", "pandas", "pillow", "platformdirs", "pycparser",
    "python-dateutil", "regex", "rpds-py", "scipy", "soupsieve", "tornado", "transformers", "typer",
}


def test_python310_lock_differs_only_where_3_10_has_no_release():
    main, py310 = _pins("requirements.lock"), _pins("requirements-py310.lock")
    assert py310["torch"] == main["torch"], "every Python runs the same torch"
    top_level = [line.split("==")[0].lower().replace("_", "-") for line in
                 (ROOT / "requirements.in").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert not [p for p in top_level if p not in py310], "a requirements.in package is missing for 3.10"
    changed = {p for p in main if p in py310 and py310[p] != main[p]}
    assert changed <= NEEDS_PY311, f"3.10 pins differ without a reason: {sorted(changed - NEEDS_PY311)}"
    dropped = set(main) - set(py310)
    assert dropped <= {"ipython-pygments-lexers"}, dropped  # an ipython 9 dependency; the 3.10 lock has 8
    cuda = [p for p in py310 if p.startswith(("nvidia-", "cuda-")) or p == "triton"]
    assert not cuda, f"the CPU environment pins no CUDA packages: {cuda}"

