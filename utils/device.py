"""The device to run on, and whether it runs bfloat16 (natively, emulated, or not at all).

Re-exported by :mod:`utils.env`, where notebooks import them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from utils.validate import check_choice, fail

#: ``COURSE_NO_BF16=1`` treats every device as having no bfloat16, as on a Colab T4: mixed precision then
#: falls back to fp16 with a GradScaler, on the CPU too, so CI exercises the path a T4 takes.
NO_BF16_ENV_VAR = "COURSE_NO_BF16"

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
_TRUE = {"1", "true", "yes", "on"}


def flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a yes word ("1", "true", "yes", "on")."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def get_device(prefer: str = "auto"):
    """The torch device to use: cuda, then mps, then cpu for ``prefer="auto"``.

    Asking for a device that is absent raises a ValueError saying so, instead of failing later
    inside torch.
    """
    import torch

    check_choice("prefer", prefer, DEVICE_CHOICES)
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if prefer == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if prefer == "cuda" and not cuda:
        fail("prefer", prefer, "'auto' or 'cpu': no CUDA GPU is visible to torch")
    if prefer == "mps" and not mps:
        fail("prefer", prefer, "'auto' or 'cpu': Apple MPS is not available")
    return torch.device(prefer)


def no_bf16_forced() -> bool:
    """True under ``COURSE_NO_BF16=1``: behave as on a GPU without bfloat16 (a T4), for testing that path."""
    return flag(NO_BF16_ENV_VAR)


@dataclass(frozen=True)
class Bf16Support:
    """What bfloat16 means on one device: whether the course uses it there, and whether the hardware does it."""

    usable: bool  # bf16 autocast runs correctly and the course uses it (natively, or emulated on a CPU)
    native: bool  # the hardware computes bf16 itself (not an emulation through fp32)
    how: str  # one line saying which, e.g. "native (CUDA compute capability 8.0)"


def _cpu_bf16_native() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); False when torch cannot say."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private probe: absent in some builds
        return False


def bf16_support(device=None) -> Bf16Support:
    """Whether ``device`` runs bfloat16, and how: natively (CUDA compute capability >= 8.0, i.e. not a T4
    or V100; Apple GPUs on macOS 14+; CPUs with AVX512-BF16 / AMX) or emulated (other CPUs: correct, slow).

    On CUDA only native bf16 counts as usable (a T4 emulates it far slower than fp16, so the course takes
    the fp16 + GradScaler path there). ``COURSE_NO_BF16=1`` makes it unusable everywhere (the T4 path,
    testable on any machine)."""
    import torch

    device = torch.device(device) if device is not None else get_device()
    if no_bf16_forced():
        return Bf16Support(False, False, f"off: {NO_BF16_ENV_VAR}=1")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return Bf16Support(native, native, f"{'native' if native else 'no'} (CUDA compute capability {major}.{minor})")
    if device.type == "mps":
        ok = hasattr(torch.backends.mps, "is_macos_or_newer") and torch.backends.mps.is_macos_or_newer(14, 0)
        return Bf16Support(ok, ok, "native (Apple GPU, macOS 14+)" if ok else "no (needs macOS 14+)")
    if _cpu_bf16_native():
        return Bf16Support(True, True, "native (CPU with AVX512-BF16 / AMX)")
    return Bf16Support(True, False, "emulated on the CPU (correct, slower than fp32)")


def bf16_usable(device=None) -> bool:
    """Whether the course uses bf16 on ``device`` -- natively or emulated on a CPU (see :func:`bf16_support`,
    whose ``native`` field says which)."""
    return bf16_support(device).usable


#: The earlier name of :func:`bf16_usable` (notebook 03, utils.train): True also where bf16 is emulated.
bf16_supported = bf16_usable
