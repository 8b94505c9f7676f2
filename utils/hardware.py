"""One table of the GPUs the course talks about: memory as the card reports it, dense peak FLOP/s per number
format, bf16 support and an indicative price, each figure with its source.

Memory, three figures per card (binary units, see :mod:`utils.units`):

* ``memory_mib``: the total ``nvidia-smi`` reports. An "A100 80GB" reports 81,920 MiB = 80 GiB (85.9e9
  bytes); GDDR6 cards keep 1/16 of their memory for ECC, so a "16 GB" T4 reports 15,360 MiB.
* ``cuda_total_mib``: what a CUDA program sees, ``torch.cuda.get_device_properties(i).total_memory``: a
  few hundred MiB less, which the driver keeps (it varies slightly with the driver version). None where no
  observation was recorded; the ``nvidia-smi`` total stands in for it then.
* :data:`CONTEXT_RESERVE`: what a training process needs besides its tensors (CUDA context, cuBLAS/cuDNN
  workspaces, allocator fragmentation), kept free when counting how many cards a model needs.

Peak FLOP/s are the datasheets' **dense** figures (NVIDIA's headline "with sparsity" figures are 2x and
need 2:4 structured sparsity that dense pre-training does not have). Prices are indicative on-demand list
prices per GPU-hour, for cost examples only: they change often and differ between providers.

No torch import except in :func:`device_peak_flops`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from utils.units import GiB, MiB
from utils.validate import check_choice, check_int, check_number, fail

#: Number formats a peak can be given for ("tf32": fp32 matmuls on tensor cores; int8 in ops/s).
PEAK_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")

#: Kept free on every card when counting cards (:func:`utils.planning.gpu_estimate`): the CUDA context
#: (roughly 0.3-0.6 GiB with torch 2.x), cuBLAS/cuDNN workspaces and allocator fragmentation. A round
#: assumption, not a measurement: pass another ``reserve_bytes`` to see its effect.
CONTEXT_RESERVE = 1 * GiB


@dataclass(frozen=True)
class GPU:
    """One GPU model. Every figure that is not None has an entry in ``sources``."""

    key: str  # short name used across the course ("A100-80")
    name: str  # product name
    pattern: str  # regular expression matched against torch.cuda.get_device_name()
    name_gib: int  # the "80" of "A100 80GB": the size in the product name (NVIDIA's GB there is binary)
    memory_mib: int  # total memory nvidia-smi reports, MiB
    cuda_total_mib: int | None  # torch's total_memory (the driver's share removed), MiB; None: not recorded
    peak_flops: dict = field(compare=False)  # dense peak FLOP/s per number format (keys from PEAK_DTYPES)
    bf16: bool  # native bfloat16 matmuls (compute capability >= 8.0)
    price_per_hour: float  # indicative on-demand USD per GPU-hour
    sources: dict = field(compare=False)  # figure -> where it comes from

    def __post_init__(self):
        check_int("memory_mib", self.memory_mib, minimum=1)
        check_int("cuda_total_mib", self.cuda_total_mib, minimum=1, maximum=self.memory_mib, allow_none=True)
        check_int("name_gib", self.name_gib, minimum=1)
        check_number("price_per_hour", self.price_per_hour, minimum=0, min_open=True)
        for dtype, peak in self.peak_flops.items():
            check_choice("peak_flops key", dtype, PEAK_DTYPES)
            check_number(f"peak_flops[{dtype!r}]", peak, minimum=0, min_open=True)
        if ("bf16" in self.peak_flops) != self.bf16:
            fail("bf16", self.bf16, "True exactly when a bf16 peak is listed")
        needed = {"memory_mib", "peak_flops", "price_per_hour"} | (
            {"cuda_total_mib"} if self.cuda_total_mib is not None else set()
        )
        missing = sorted(needed - set(self.sources))
        if missing:
            fail("sources", self.sources, f"a source for each figure; missing {missing}")

    @property
    def memory_bytes(self) -> int:
        """Total memory as the card reports it (``nvidia-smi``), in bytes."""
        return self.memory_mib * MiB

    @property
    def cuda_total_bytes(self) -> int:
        """What a CUDA program sees (torch's ``total_memory``); the nvidia-smi total where not recorded."""
        return (self.cuda_total_mib or self.memory_mib) * MiB

    def usable_bytes(self, reserve_bytes: float = CONTEXT_RESERVE) -> float:
        """Bytes left for tensors: :attr:`cuda_total_bytes` less ``reserve_bytes`` (CUDA context etc.)."""
        check_number("reserve_bytes", reserve_bytes, minimum=0, maximum=self.cuda_total_bytes, max_open=True)
        return self.cuda_total_bytes - reserve_bytes

    @property
    def memory_gb(self) -> int:
        """The size in the product name (16 for a T4, 80 for an A100 80GB): a label, in NVIDIA's binary GB.

        Kept under this name for the notebooks' and labs' table headers; count with :attr:`memory_bytes` or
        :meth:`usable_bytes`, not with this."""
        return self.name_gib

    @property
    def tensor_dtype(self) -> str:
        """The 16-bit format its tensor cores run for training: "bf16", or "fp16" without bf16 (T4, V100)."""
        return "bf16" if self.bf16 else "fp16"

    def peak(self, dtype: str | None = None) -> float | None:
        """Dense peak FLOP/s for ``dtype`` (default: :attr:`tensor_dtype`); None if not published."""
        dtype = self.tensor_dtype if dtype is None else dtype
        check_choice("dtype", dtype, PEAK_DTYPES)
        return self.peak_flops.get(dtype)


# Sources, shared by several rows.
_SMI_MODAL = "nvidia-smi total listed in modal-labs/modal-client PR #2797 (2025)"
_PRICE_LAMBDA = "indicative: Lambda on-demand list price per GPU-hour (2025)"
_PRICE_AWS = "indicative: AWS on-demand price of the smallest instance with this GPU (us-east-1, 2025)"
_PRICE_GCP = "indicative: Google Cloud on-demand price per GPU-hour (2025)"
_H100_SHEET = "NVIDIA H100 datasheet: dense = half the 'with sparsity' figure"
_V100_SHEET = "NVIDIA V100 datasheet (SXM2): fp16 tensor cores; no bf16, no tf32"
_A100_SHEET = "NVIDIA A100 datasheet (SXM), dense"
# Dense peak FLOP/s shared by cards of one chip (the H200 has the H100 SXM's compute).
_HOPPER_SXM = {"fp32": 67e12, "tf32": 494e12, "bf16": 989e12, "fp16": 989e12, "fp8": 1979e12, "int8": 1979e12}
_A100 = {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12, "int8": 624e12}
_V100 = {"fp32": 15.7e12, "fp16": 125e12}

#: Every GPU the course mentions, most specific name pattern first (the H100 PCIe before the H100 SXM).
GPU_TABLE: dict[str, GPU] = {
    gpu.key: gpu
    for gpu in (
        GPU("H100-PCIe", "NVIDIA H100 PCIe 80GB", r"H100.*PCIe", 80, 81559, None,
            {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12, "fp16": 756e12, "fp8": 1513e12, "int8": 1513e12},
            True, 2.49,
            {"memory_mib": "nvidia-smi total in public logs of H100 PCIe machines (81,559 MiB, as the SXM card)",
             "peak_flops": _H100_SHEET + " (PCIe)", "price_per_hour": _PRICE_LAMBDA}),
        GPU("H100", "NVIDIA H100 SXM 80GB", r"H100", 80, 81559, 81090,
            _HOPPER_SXM,
            True, 3.29,
            {"memory_mib": _SMI_MODAL + "; NVIDIA/nccl issue #1264",
             "cuda_total_mib": "torch.cuda.get_device_properties on H100 SXM nodes, torch 2.7 (81,082-81,090 "
                               "MiB across drivers); not yet recorded on the course's H100",
             "peak_flops": _H100_SHEET + " (SXM; 989.5 and 494.5 TFLOP/s rounded down)",
             "price_per_hour": _PRICE_LAMBDA,
             "measured": "the course's H100, torch 2.11: cuBLAS matmuls of a compiled bf16 GPT-2 step ran at "
                         "about 750 TFLOP/s, 76% of the bf16 peak (benchmarks/RESULTS.md)"}),
        GPU("H200", "NVIDIA H200 SXM 141GB", r"H200", 141, 143771, 143156,
            _HOPPER_SXM,
            True, 3.50,
            {"memory_mib": "nvidia-smi total in public logs of H200 SXM nodes (143,771 MiB = 140.4 GiB)",
             "cuda_total_mib": "torch.cuda.get_device_properties on an H200 in a public script (143,156 MiB)",
             "peak_flops": "NVIDIA H200 datasheet (SXM): the H100 SXM's compute; dense = half the sparse figure",
             "price_per_hour": "indicative assumption (no list price recorded here): an H100's plus a premium"}),
        GPU("A100-40", "NVIDIA A100 40GB", r"A100", 40, 40960, 40339,
            _A100,
            True, 1.29,
            {"memory_mib": _SMI_MODAL,
             "cuda_total_mib": "CUDA deviceQuery 'Total amount of global memory: 40339 MBytes', driver 535 "
                               "(bottlerocket-os/bottlerocket PR #3873); older drivers report 40,536 MiB",
             "peak_flops": _A100_SHEET, "price_per_hour": _PRICE_LAMBDA}),
        GPU("A100-80", "NVIDIA A100 80GB", r"A100", 80, 81920, 81049,
            _A100,
            True, 1.79,
            {"memory_mib": _SMI_MODAL + " (81,920 MiB = exactly 80 GiB)",
             "cuda_total_mib": "CUDA total global memory of an A100 80GB PCIe, 81,049 MiB (ekondis/mixbench "
                               "issue #47); torch's out-of-memory messages on these cards read 79.15 GiB",
             "peak_flops": _A100_SHEET, "price_per_hour": _PRICE_LAMBDA}),
        GPU("A10G", "NVIDIA A10G 24GB", r"A10G", 24, 23028, 22587,
            {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "fp16": 125e12, "int8": 250e12},
            True, 1.01,
            {"memory_mib": "nvidia-smi total in NVIDIA/DCGM issue #232 (24 GiB less 1/16 kept for ECC)",
             "cuda_total_mib": "torch.cuda.get_device_properties on an AWS A10G in a public log",
             "peak_flops": "NVIDIA A10 datasheet, dense: NVIDIA publishes none for AWS's A10G variant, "
                           "whose tensor throughput is reported lower -- an upper bound",
             "price_per_hour": _PRICE_AWS + " (g5.xlarge)"}),
        GPU("L4", "NVIDIA L4 24GB", r"\bL4\b", 24, 23034, None,  # word boundary: not the L40 / L40S
            {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12, "fp16": 121e12, "fp8": 242e12, "int8": 242e12},
            True, 0.71,
            {"memory_mib": _SMI_MODAL,
             "peak_flops": "NVIDIA L4 datasheet: dense = half the 'with sparsity' figure",
             "price_per_hour": _PRICE_GCP + " (g2-standard-4)"}),
        GPU("V100-16", "NVIDIA V100 SXM2 16GB", r"V100", 16, 16160, 16160,
            _V100,
            False, 2.48,
            {"memory_mib": "nvidia-smi total in 4paradigm/k8s-vgpu-scheduler issue #7",
             "cuda_total_mib": "torch.cuda.get_device_properties in public logs (16,160 MiB, as nvidia-smi)",
             "peak_flops": _V100_SHEET,
             "price_per_hour": _PRICE_GCP}),
        GPU("V100-32", "NVIDIA V100 SXM2 32GB", r"V100", 32, 32480, None,
            _V100,
            False, 2.48,
            {"memory_mib": "nvidia-smi total in godweiyang/GrabGPU issue #5",
             "peak_flops": _V100_SHEET,
             "price_per_hour": _PRICE_GCP + " (as the 16 GB card; an assumption)"}),
        GPU("T4", "NVIDIA T4 16GB", r"\bT4\b", 16, 15360, 15102,
            {"fp32": 8.1e12, "fp16": 65e12, "int8": 130e12},
            False, 0.53,
            {"memory_mib": _SMI_MODAL + " (16 GiB less 1/16 kept for ECC)",
             "cuda_total_mib": "torch.cuda.get_device_properties on Colab's T4 (15,095-15,109 MiB across "
                               "drivers: the 14.75 GiB of Colab's out-of-memory messages)",
             "peak_flops": "NVIDIA T4 datasheet: fp16 tensor cores; no bf16, no tf32",
             "price_per_hour": _PRICE_AWS + " (g4dn.xlarge)"}),
    )
}

#: The four cards the course's tables compare (notebook 03, lab 01): a Colab T4 and the data-centre cards.
COURSE_GPUS = ("T4", "A100-40", "A100-80", "H100")


def _by_pattern() -> tuple[GPU, ...]:
    seen, out = set(), []
    for row in GPU_TABLE.values():
        if row.pattern not in seen:
            seen.add(row.pattern)
            out.append(row)
    return tuple(out)


#: (name pattern, dense 16-bit tensor peak FLOP/s, its format), one per distinct pattern, in matching order:
#: derived from :data:`GPU_TABLE` for :func:`peak_flops_for` (and kept for notebook 06).
PEAK_FLOPS: tuple[tuple[str, float, str], ...] = tuple(
    (row.pattern, row.peak(), row.tensor_dtype) for row in _by_pattern()
)


def gpu_for_device_name(device_name: str) -> GPU | None:
    """The table row whose pattern matches a CUDA device name (e.g. "NVIDIA H100 80GB HBM3"), or None.

    Cards that share a pattern (A100 40/80 GB, V100 16/32 GB) share their peaks; their memory differs, so
    read memory from the device itself, not from this row."""
    if not isinstance(device_name, str):
        fail("device_name", device_name, "a CUDA device name (str)")
    return next((row for row in _by_pattern() if re.search(row.pattern, device_name)), None)


def peak_flops_for(device_name: str, dtype: str | None = None) -> float | None:
    """Dense peak FLOP/s of a GPU from its name, for ``dtype`` (default: its 16-bit tensor format);
    None for a card not in the table or a format it has no published peak for."""
    row = gpu_for_device_name(device_name)
    return None if row is None else row.peak(dtype)


def device_peak_flops(device=None, dtype: str | None = None) -> float | None:
    """:func:`peak_flops_for` the CUDA ``device``; None on CPU / MPS / unknown GPUs."""
    import torch

    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_flops_for(torch.cuda.get_device_name(device), dtype)
