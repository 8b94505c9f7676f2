"""Where the course runs: capability probe and environment line, seeding, fast mode and the cache folder
(device choice and bf16 support: :mod:`utils.device`, re-exported here).

Every notebook calls :func:`environment_line` once after its imports, and reads its step counts through
:func:`fast_or_full`, never from ``os.environ`` directly.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import random
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Device choice and bf16 live in utils.device; re-exported here, where notebooks and modules import them.
from utils.device import (  # noqa: F401
    _TRUE,
    DEVICE_CHOICES,
    NO_BF16_ENV_VAR,
    Bf16Support,
    bf16_support,
    bf16_supported,
    bf16_usable,
    get_device,
    no_bf16_forced,
)
from utils.device import flag as _flag
from utils.validate import check_bool, check_choice, check_int, fail  # noqa: F401 -- check_choice re-exported

#: One environment variable switches fast mode (CI): ``COURSE_FAST=1``.
FAST_ENV_VAR = "COURSE_FAST"
#: ``COURSE_REQUIRE_GPU=1`` (set by ``make test-gpu``) turns "no GPU, skipped" into a failure.
REQUIRE_GPU_ENV_VAR = "COURSE_REQUIRE_GPU"
#: Overrides the course cache folder (tokenizers, converted models).
CACHE_ENV_VAR = "COURSE_CACHE"
_FALSE = {"", "0", "false", "no", "off"}


def is_fast() -> bool:
    """True when fast mode is on (``COURSE_FAST=1``): CI shrinks training steps with it.

    Any other value than a yes/no word (e.g. ``COURSE_FAST=2``) is an error, not silently full mode."""
    value = os.environ.get(FAST_ENV_VAR, "").strip().lower()
    if value not in _TRUE | _FALSE:
        fail(FAST_ENV_VAR, os.environ[FAST_ENV_VAR],
             f"{sorted(_TRUE)} for fast mode, {sorted(_FALSE - {''})} or unset for full mode")
    return value in _TRUE


def fast_or_full(full, fast, *, gpu=None):
    """Return ``fast`` in fast mode, else ``gpu`` on a CUDA GPU when given, else ``full``.

    The one place a notebook sizes its work: ``steps = fast_or_full(500, 30, gpu=2000)`` trains 30 steps in
    CI, 500 on a laptop and 2,000 where a CUDA GPU makes that as quick (fast mode wins even on a GPU, so
    ``make test-gpu`` stays short).
    """
    if is_fast():
        return fast
    if gpu is not None and get_device().type == "cuda":
        return gpu
    return full


def gpu_required() -> bool:
    """True under ``make test-gpu``: GPU checks must run, not skip."""
    return _flag(REQUIRE_GPU_ENV_VAR)


def cache_dir(*parts: str) -> Path:
    """The course cache folder (created on demand), or a sub-folder of it.

    ``$COURSE_CACHE`` if set, else ``~/.cache/llm-pretraining-course``. Never inside the repository,
    so a test run leaves the working tree unmodified.
    """
    root = os.environ.get(CACHE_ENV_VAR, "").strip() or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "llm-pretraining-course"
    )
    root = Path(root).expanduser()  # "~/c" means the home folder's c, not a folder named "~" here
    if not root.is_absolute():
        fail(CACHE_ENV_VAR, os.environ.get(CACHE_ENV_VAR),
             "an absolute path or one starting with ~ (a relative one would put the cache wherever the notebook runs)")
    if root.exists() and not root.is_dir():
        fail(CACHE_ENV_VAR, str(root), "a folder (this is a file)")
    for part in parts:
        if not isinstance(part, str) or not part or part in (".", "..") or os.sep in part:
            fail("parts", parts, "plain folder names")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def has_package(name: str) -> bool:
    """Whether ``import name`` would find a package (without importing it)."""
    return importlib.util.find_spec(name) is not None


def require(package: str, purpose: str, pip_name: str | None = None):
    """Import and return ``package``, or raise an ImportError that says what to install and why."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs the package '{package}', which is not installed. "
            f"Install it with: pip install {pip_name or package}  (or run `make lab`, which installs "
            f"the whole course environment)."
        ) from exc


def import_bitsandbytes():
    """Import bitsandbytes without its import-time warning about the optional ``kernels`` package
    (which would fetch CPU kernels from the hub; bitsandbytes falls back to its own, which is what we
    want offline). Raises the usual ImportError, with advice, when it is not installed."""
    import logging

    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return require("bitsandbytes", "8-bit and 4-bit quantization")
    finally:
        log.setLevel(level)


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and torch's RNGs (all devices). ``deterministic`` also asks torch for
    deterministic kernels (slower on GPUs; CPU results are deterministic anyway).

    ``seed`` is a non-negative int (not a bool). Python's string hashing is not seeded here: it is fixed
    when the interpreter starts, so ``PYTHONHASHSEED`` has to be set before Python runs (setting it from
    here would only reach child processes started later)."""
    import numpy as np
    import torch

    seed = check_int("seed", seed, minimum=0)  # False is not seed 0: bools are refused
    deterministic = check_bool("deterministic", deterministic)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CPU and every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether huggingface.co answers on port 443 (False when ``HF_HUB_OFFLINE=1`` is set)."""
    if _flag("HF_HUB_OFFLINE"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return None


@dataclass
class EnvReport:
    """What :func:`probe` found on this machine."""

    python: str  # Python version, e.g. "3.11.7"
    platform: str  # OS and machine, e.g. "Linux x86_64"
    versions: dict  # package -> version (None when not installed)
    device: str  # "cuda", "mps" or "cpu"
    device_name: str  # GPU model or CPU architecture
    bf16: bool  # native bfloat16 on that device (bf16_how says more: emulated on a CPU is not native)
    gpu_memory_bytes: int | None  # total memory of GPU 0 as torch sees it (None without CUDA)
    bitsandbytes_ok: bool  # bitsandbytes imports (quantization notebook)
    hub: bool | None  # Hugging Face Hub reachable (None when not checked)
    fast: bool  # fast mode on
    on_colab: bool = False  # running in Google Colab
    advice: list = field(default_factory=list)  # one sentence per missing piece
    bf16_how: str = ""  # how bf16 runs there: "native (...)", "emulated on the CPU (...)", "no (...)"


TRACKED_PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "bitsandbytes", "gguf", "ipywidgets")

#: The oldest versions the course works with: pyproject.toml's floors for the tracked packages (a test keeps the
#: two equal). A runtime with an older one -- a Colab image that lags, a shared Hub -- gets told which and how
#: to upgrade, instead of an error from deep inside the library later.
MIN_VERSIONS = {"torch": "2.4", "transformers": "5.6", "accelerate": "1.1", "tokenizers": "0.22",
                "bitsandbytes": "0.50", "gguf": "0.11", "ipywidgets": "8"}


def too_old(versions: dict) -> dict:
    """package -> (installed, minimum) for each package of ``versions`` older than :data:`MIN_VERSIONS`."""
    from packaging.version import InvalidVersion, Version

    out = {}
    for pkg, installed in versions.items():
        if installed is None or pkg not in MIN_VERSIONS:
            continue
        try:
            if Version(installed) < Version(MIN_VERSIONS[pkg]):
                out[pkg] = (installed, MIN_VERSIONS[pkg])
        except InvalidVersion:  # a local build with an odd version string: do not guess
            continue
    return out


def probe(check_hub: bool = True) -> EnvReport:
    """Inspect this machine: versions, device, bf16, GPU memory, bitsandbytes, hub, fast mode."""
    import torch

    versions = {p: _version(p) for p in TRACKED_PACKAGES}
    device = get_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        name, mem = props.name, int(props.total_memory)
    else:
        name, mem = (platform.processor() or platform.machine()), None
    try:
        import_bitsandbytes()
        bnb_ok = True
    except Exception:  # bitsandbytes can fail with OSError/RuntimeError on odd platforms too
        bnb_ok = False
    bf16 = bf16_support(device)
    report = EnvReport(
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        versions=versions,
        device=device.type,
        device_name=name,
        bf16=bf16.native,
        gpu_memory_bytes=mem,
        bitsandbytes_ok=bnb_ok,
        hub=hub_reachable() if check_hub else None,
        fast=is_fast(),
        on_colab="google.colab" in sys.modules,
        bf16_how=bf16.how,
    )
    report.advice = advice(report)
    return report


def advice(report: EnvReport) -> list[str]:
    """Plain-language advice for each missing piece of ``report``."""
    out = []
    if report.device == "cpu":
        out.append(
            "No GPU found: every notebook still runs on the CPU (smaller models, fewer steps); GPU-only "
            "measurements are skipped with a note. On Colab choose Runtime > Change runtime type > T4 GPU."
        )
    if report.device == "cuda" and not report.bf16 and not no_bf16_forced():
        out.append(
            "This GPU has no native bfloat16 (e.g. a T4): mixed precision uses fp16 with a GradScaler instead."
        )
    if report.device == "mps":
        out.append("Apple MPS found: training runs on it; bitsandbytes and CUDA memory statistics are not available.")
    for pkg in TRACKED_PACKAGES:
        if report.versions.get(pkg) is None:
            out.append(f"'{pkg}' is not installed: run `make lab` (or pip install {pkg}).")
    for pkg, (installed, minimum) in too_old(report.versions).items():
        out.append(f"{pkg} {installed} is older than the {minimum} the course needs: pip install -U '{pkg}>={minimum}', "
                   "then restart the kernel (Colab: Runtime > Restart session).")
    if report.versions.get("bitsandbytes") and not report.bitsandbytes_ok:
        out.append("bitsandbytes is installed but fails to import: notebook 04 falls back to its from-scratch code.")
    if report.hub is False:
        out.append(
            "The Hugging Face Hub is not reachable: the course runs offline on the models and corpora it "
            "bundles (that is the default)."
        )
    return out


def environment_line(report: EnvReport | None = None) -> str:
    """One line for the top of a notebook: device, key versions, fast mode.

    Under ``make test-gpu`` (``COURSE_REQUIRE_GPU=1``) it raises when the kernel sees no CUDA GPU, so a
    notebook run there cannot pass on the CPU by accident.
    """
    import torch

    r = report or probe(check_hub=False)
    if gpu_required() and r.device != "cuda":
        raise RuntimeError(
            f"{REQUIRE_GPU_ENV_VAR}=1 (make test-gpu) but this kernel runs on '{r.device}': no CUDA GPU is "
            "visible to torch"
        )
    dev = r.device if r.device == "cpu" else f"{r.device} ({r.device_name})"
    mem = f", {r.gpu_memory_bytes / 2**30:.0f} GiB" if r.gpu_memory_bytes else ""
    return (
        f"device: {dev}{mem} | bf16: {r.bf16_how.split(' ')[0].rstrip(':') or ('native' if r.bf16 else 'no')} | torch {torch.__version__} | "
        f"transformers {r.versions.get('transformers')} | threads {torch.get_num_threads()} | "
        f"mode: {'fast' if r.fast else 'full'}" + (" | COURSE_NO_BF16: fp16 path forced" if no_bf16_forced() else "")
        + "".join(f" | TOO OLD: {pkg} {have} < {need} (pip install -U '{pkg}>={need}', restart the kernel)"
                  for pkg, (have, need) in too_old(r.versions).items())
    )


#: Set by scripts/run_notebooks.py when executing notebooks headless: progress bars print text, so the
#: committed outputs stay readable on GitHub (a widget bar stores nothing readable).
TEXT_PROGRESS_ENV_VAR = "COURSE_TEXT_PROGRESS"


def progress_bar(*args, **kwargs):
    """A ``tqdm.auto`` progress bar (a widget in JupyterLab), or a plain-text one in headless runs."""
    if _flag(TEXT_PROGRESS_ENV_VAR):
        from tqdm.std import tqdm

        kwargs.setdefault("file", sys.stdout)
        kwargs.setdefault("ascii", True)
        kwargs.setdefault("mininterval", 5.0)
    else:
        from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)
