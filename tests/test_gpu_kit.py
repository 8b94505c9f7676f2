"""The offline GPU kit (scripts/fetch_gpu_wheels.sh, scripts/gpu_check.sh) and the GPU report of
scripts/run_notebooks.py, checked without a GPU: pins, argument errors, the trace hook, the table and its section in benchmarks/RESULTS.md."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import run_notebooks  # noqa: E402


def _pins(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def test_gpu_wheels_are_pinned_as_in_the_lock():
    wheels, lock = _pins(ROOT / "scripts" / "gpu_wheels.txt"), _pins(ROOT / "requirements.lock")
    assert {"bitsandbytes", "gguf", "nbval", "ipykernel"} <= set(wheels)
    differ = {n: (v, lock[n]) for n, v in wheels.items() if n in lock and lock[n] != v}
    assert not differ, f"scripts/gpu_wheels.txt disagrees with requirements.lock: {differ}"


def test_fetch_script_rejects_bad_arguments_before_downloading():
    for args, needle in ((["--platform", "arm"], "--platform arm is not valid"),
                         (["--python", "2.7"], "--python 2.7 is not valid"),
                         (["--bogus"], "unknown argument '--bogus'")):
        res = subprocess.run(["bash", "scripts/fetch_gpu_wheels.sh", *args], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 2 and needle in res.stderr


def test_gpu_check_rejects_an_unknown_step(tmp_path):
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "everything"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)})
    assert res.returncode == 2 and "unknown step 'everything'" in res.stderr


def test_readme_documents_the_kit_without_outside_paths():
    text = (ROOT / "README.md").read_text()
    assert "scripts/fetch_gpu_wheels.sh" in text and "scripts/gpu_check.sh" in text and "make run-gpu" in text
    assert "../shared" not in text


def test_trace_startup_is_installed_and_valid_python(tmp_path, monkeypatch):
    monkeypatch.delenv("IPYTHONDIR", raising=False)
    trace = run_notebooks.gpu_trace_env(tmp_path)
    startup = tmp_path / "profile_default" / "startup" / "00-course-gpu-trace.py"
    compile(startup.read_text(), str(startup), "exec")
    assert run_notebooks.read_trace(trace) == []  # nothing recorded yet
    trace.write_text('[{"cell": 3, "peak_bytes": 1073741824}]')
    assert run_notebooks.read_trace(trace) == [{"cell": 3, "peak_bytes": 2**30}] and not trace.exists()


def test_report_table_names_gpu_cells_and_peaks():
    rows = [("notebooks/02_x.ipynb", 61.2, "cuda", "passed"), ("notebooks/03_y.ipynb", 5.0, "cuda", "FAILED")]
    md = run_notebooks.report_markdown(rows, {"notebooks/02_x.ipynb": [{"cell": 4, "peak_bytes": 2**30},
                                                                      {"cell": 9, "peak_bytes": 3 * 2**30}]}, fast=False)
    assert "| `notebooks/02_x.ipynb` | 61 | cuda | 4, 9 | 3.00 GiB | passed |" in md
    assert "| `notebooks/03_y.ipynb` | 5 | cuda | none | - | FAILED |" in md
    assert md.startswith("Full mode,")


def test_results_section_is_appended_then_replaced_leaving_the_rest():
    text = "# Measured results\n\nSomething measured earlier.\n"
    once = run_notebooks.update_results(text, "full-cuda", "| table | 1 |\n")
    assert once.startswith(text.rstrip("\n")) and "## The whole course on a GPU" in once and "| table | 1 |" in once
    after = once + "\n## A later section\n\nkept.\n"
    twice = run_notebooks.update_results(after, "full-cuda", "| table | 2 |\n")
    assert "| table | 1 |" not in twice and "| table | 2 |" in twice and twice.endswith("## A later section\n\nkept.\n")
    assert twice.count("## The whole course on a GPU") == 1
    both = run_notebooks.update_results(twice, "full-cpu", "| cpu |\n")  # another device: its own section
    assert "| table | 2 |" in both and "| cpu |" in both


def test_results_refuses_a_file_with_one_marker():
    with pytest.raises(SystemExit, match="only one of the markers"):
        run_notebooks.update_results("<!-- course-run:full-cuda:begin -->\n", "full-cuda", "x")
