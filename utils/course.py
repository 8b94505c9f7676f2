"""The course map: one table that notebook 00 and the README show, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from utils.validate import check_int, fail

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Lesson:
    number: str  # "00" .. "07": the order to take them in
    file: str  # notebook file name under notebooks/
    topic: str  # one line: what it teaches
    minutes_cpu: int  # wall-clock minutes, top to bottom, 2-core CPU, full mode (measured once available)
    minutes_gpu: int  # the same on one recent CUDA GPU (Colab T4 or better)
    hardware: str  # what it needs, and what happens without it

    def __post_init__(self):
        if not (isinstance(self.number, str) and len(self.number) == 2 and self.number.isdigit()):
            fail("number", self.number, 'two digits, e.g. "03"')
        if not (isinstance(self.file, str) and self.file.startswith(self.number + "_") and self.file.endswith(".ipynb")):
            fail("file", self.file, f"a notebook file name starting with {self.number}_ and ending in .ipynb")
        check_int("minutes_cpu", self.minutes_cpu, minimum=1)
        check_int("minutes_gpu", self.minutes_gpu, minimum=1)

    @property
    def available(self) -> bool:
        """Whether the notebook exists in this checkout (the course is built notebook by notebook)."""
        return (ROOT / "notebooks" / self.file).exists()


COURSE_MAP: tuple[Lesson, ...] = (
    Lesson("00", "00_welcome_and_setup.ipynb", "Welcome, course map, environment check", 1, 1, "any"),
    Lesson("01", "01_choosing_a_model.ipynb", "Foundation model or your own; hubs and model cards", 4, 1,
           "any; runs a bundled 135M instruct model and a 23M encoder"),
    Lesson("02", "02_pretraining_objectives.ipynb", "Tokenisation; MLM, CLM and span corruption, trained", 5, 2,
           "any (trains three models of 1.35M-2.36M parameters; on a GPU longer, on bigger batches; "
           "the GPU time is an estimate, not yet measured in full mode)"),
    Lesson("03", "03_memory_arithmetic.ipynb", "The memory arithmetic of training, computed then measured", 1, 1,
           "any; the allocator-peak check needs a CUDA GPU (skipped with a note on CPU)"),
    Lesson("04", "04_quantization.ipynb", "FP32, FP16, BF16, INT8, NF4: bits, memory and quality", 2, 1,
           "any; bitsandbytes quantizes SmolLM2 on the CPU, and on a CUDA GPU with its kernels"),
    Lesson("05", "05_distributed_training.ipynb", "DDP, ZeRO and FSDP, run with several processes", 3, 2,
           "any (CPU processes with gloo); NCCL with 2+ GPUs"),
    Lesson("06", "06_scaling_laws.ipynb", "Compute budgets, Chinchilla, a scaling sweep", 9, 10,
           "any; a GPU runs a wider sweep; the law fit needs scipy (skipped with a note without it)"),
    Lesson("07", "07_domain_adaptation.ipynb", "Domain-adaptive pre-training: code versus prose", 8, 4,
           "any (trains 1.3M-parameter models, adapts SmolLM2's top blocks); a GPU trains longer"),
)


def course_map_markdown() -> str:
    """The course map as a markdown table (minutes are full-mode estimates; fast mode takes less)."""
    rows = [
        "| # | notebook | topic | min (CPU) | min (GPU) | hardware | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for lesson in COURSE_MAP:
        status = "available" if lesson.available else "planned"
        rows.append(
            f"| {lesson.number} | `{lesson.file}` | {lesson.topic} | {lesson.minutes_cpu} | "
            f"{lesson.minutes_gpu} | {lesson.hardware} | {status} |"
        )
    return "\n".join(rows)
