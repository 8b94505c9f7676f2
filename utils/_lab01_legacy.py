"""(Temporary, removed with the lab 01 rework of issue 14: the old quiz checker.) Auto-checks for the lab notebooks: ``check("ex1", answer_1)`` says "correct", "not quite: <hint>" or
"not answered yet".

Every expected value is **computed** by the course's library (``utils.memory``) when it is checked, never
typed in here, so the labs and the lecture notebooks cannot disagree. A verdict never reveals the expected
value: a wrong answer gets a hint that teaches (the common mistake it looks like, or the idea to revisit).

* ``answer=None`` -> "not answered yet" (no exception, so a learner's notebook runs to the end);
* numbers are compared with a relative tolerance stated per exercise (0 for counts, which must be exact);
* choice answers (an option letter) are compared exactly, ignoring case and surrounding spaces;
* ``strict=True`` raises ``AssertionError`` unless the answer is correct (the solutions notebooks use it);
* an unknown exercise id raises ``ValueError`` listing the valid ids.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

from utils.memory import (
    GB,
    activation_memory,
    gpus_needed,
    model_memory,
    task_memory,
    training_memory,
    zero_memory_per_device,
)

# ---------------------------------------------------------------------------------------------------------
# Verdicts and exercises
# ---------------------------------------------------------------------------------------------------------

#: The statuses a :class:`Verdict` can have.
STATUSES = ("not answered", "correct", "not quite", "invalid")


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`check`. Shown in a notebook as its one-line ``message``; truthy when correct."""

    exercise_id: str
    status: str  # one of STATUSES
    message: str

    @property
    def ok(self) -> bool:
        return self.status == "correct"

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:  # what a notebook shows as the cell's output
        return self.message


@dataclass(frozen=True)
class Exercise:
    """One auto-checked exercise. ``expected`` and ``mistakes`` are functions, evaluated at check time.

    ``mistakes`` returns (value, hint) pairs: an answer within tolerance of ``value`` gets ``hint``.
    For choice exercises, ``choices`` maps each option letter to its description, and ``mistakes``
    returns (option, hint) pairs.
    """

    id: str
    title: str
    unit: str  # "GB", "GPUs", or "option" for a choice exercise
    expected: Callable[[], object]
    hint: str  # the general hint for a wrong answer (must not contain the expected value)
    rel_tol: float = 0.01
    mistakes: Callable[[], list[tuple[object, str]]] = field(default=lambda: [])
    choices: dict[str, str] | None = None

    @property
    def categorical(self) -> bool:
        return self.choices is not None


# ---------------------------------------------------------------------------------------------------------
# Lab 01 -- Memory budget (builds on notebooks/03_memory_arithmetic.ipynb)
# ---------------------------------------------------------------------------------------------------------

#: Exercise 6: full fine-tuning of a 7B model on one A100 80 GB. Each option: (precision, optimizer, text).
MAKE_IT_FIT_PARAMS = 7e9
MAKE_IT_FIT_GPU = "A100-80"
MAKE_IT_FIT_OPTIONS: dict[str, tuple[str, str, str]] = {
    "a": ("fp32", "adam", "fp32 weights and gradients, Adam"),
    "b": ("mixed", "adam", "mixed precision (16-bit weights and gradients, fp32 master copy), Adam"),
    "c": ("mixed", "sgd", "mixed precision (as in b), SGD with momentum instead of Adam"),
    "d": ("fp32", "adam8bit", "fp32 weights and gradients, bitsandbytes 8-bit Adam"),
}


def _fits_one_gpu(option: str) -> bool:
    precision, optimizer, _ = MAKE_IT_FIT_OPTIONS[option]
    n = gpus_needed(MAKE_IT_FIT_PARAMS, MAKE_IT_FIT_GPU, "finetune", precision=precision, optimizer=optimizer)
    return n == 1


def _make_it_fit_expected() -> str:
    fitting = [k for k in MAKE_IT_FIT_OPTIONS if _fits_one_gpu(k)]
    if len(fitting) != 1:  # the question must have exactly one right option
        raise RuntimeError(f"exercise ex6 needs exactly one fitting option, the library says {fitting}")
    return fitting[0]


def _make_it_fit_mistakes() -> list[tuple[object, str]]:
    out = []
    for k, (precision, optimizer, text) in MAKE_IT_FIT_OPTIONS.items():
        if _fits_one_gpu(k):
            continue
        states = task_memory(MAKE_IT_FIT_PARAMS, "finetune", precision=precision, optimizer=optimizer)
        per_param = states / MAKE_IT_FIT_PARAMS
        out.append((k, f"option {k} ({text}) keeps {per_param:g} bytes per parameter of model states, "
                       f"{states / GB:,.0f} GB for 7B parameters -- more than one 80 GB GPU. "
                       "Which option shrinks the biggest item, the optimizer states?"))
    return out


def _ex1() -> float:
    return model_memory(7e9, "bf16") / GB


def _ex2() -> float:
    return training_memory(1e9, precision="fp32", optimizer="adam").total / GB


def _ex3() -> float:
    return zero_memory_per_device(13e9, 8, 3) / GB


EX4_SHAPE = {"seq_len": 2048, "batch_size": 4, "hidden_size": 4096, "n_heads": 32}


def _ex4(recompute: str = "none") -> float:
    return activation_memory(**EX4_SHAPE, n_layers=1, bytes_per_value=2, recompute=recompute).per_layer / GB


def _ex5() -> int:
    return gpus_needed(30e9, "A100-80", "pretrain", precision="fp32", optimizer="adam")


_BYTES_HINT = "it looks like you answered in bytes: give the answer in GB (1 GB = 10^9 bytes)"

LAB01: dict[str, Exercise] = {
    e.id: e
    for e in [
        Exercise(
            "ex1", "bytes to store a 7B model in bf16", "GB", _ex1,
            hint="storing needs one value per parameter: parameters x bytes per value of the format. "
                 "How many bytes does one bf16 value take?",
            mistakes=lambda: [
                (model_memory(7e9, "fp32") / GB, "that is fp32 (4 bytes per value); bf16 is a 16-bit format"),
                (_ex1() * GB, _BYTES_HINT),
            ],
        ),
        Exercise(
            "ex2", "memory to train a 1B model in fp32 with Adam (the lecture)", "GB", _ex2,
            hint="add up the bytes per parameter: the weight, its gradient, Adam's two fp32 states, and the "
                 "lecture's activation estimate -- then multiply by the number of parameters",
            mistakes=lambda: [
                (training_memory(1e9, activation_bytes_per_param=0).total / GB,
                 "those are the model states only: the lecture also counts 8 bytes per parameter of "
                 "activations and temporary memory"),
                (model_memory(1e9, "fp32") / GB, "that is the memory to store the weights, not to train them"),
                (_ex2() - model_memory(1e9, "fp32") / GB, "remember the weights themselves (4 bytes per parameter in fp32) are in memory too"),
                (_ex2() * GB, _BYTES_HINT),
            ],
        ),
        Exercise(
            "ex3", "ZeRO-3 model states per GPU, 13B parameters, 8 GPUs, mixed-precision Adam", "GB", _ex3,
            hint="mixed-precision Adam keeps 2 + 2 + K bytes per parameter (K = 12: fp32 master copy, m, v); "
                 "stage 3 shards all of them over the GPUs",
            mistakes=lambda: [
                (zero_memory_per_device(13e9, 8, 0) / GB,
                 "that is plain data parallelism (stage 0): every GPU keeps everything. Stage 3 shards it"),
                (zero_memory_per_device(13e9, 8, 1) / GB,
                 "that is stage 1 (only the optimizer states sharded); stage 3 also shards gradients and weights"),
                (zero_memory_per_device(13e9, 8, 2) / GB,
                 "that is stage 2 (weights not sharded); stage 3 shards the 16-bit weights too"),
                (_ex3() * GB, _BYTES_HINT),
            ],
        ),
        Exercise(
            "ex4", "activation bytes of one transformer layer (Korthikanti et al., 16-bit)", "GB", _ex4,
            hint="use s b h (34 + 5 a s / h) bytes with s = 2048, b = 4, h = 4096, a = 32, "
                 "then convert to GB (10^9 bytes)",
            mistakes=lambda: [
                (_ex4("selective"), "that is only the 34 sbh term: the attention scores add 5 a s^2 b bytes "
                                    "(a s x s matrix per head) unless a fused kernel avoids storing them"),
                (_ex4() / EX4_SHAPE["batch_size"], "that looks like the memory of one sequence: which "
                                                    "quantity of the formula did you leave out?"),
                (_ex4() * 2, "check the bytes per value: the formula's constants already count 16-bit values"),
                (_ex4() * GB, _BYTES_HINT),
            ],
        ),
        Exercise(
            "ex5", "A100 80 GB GPUs needed to pre-train a 30B model (the lecture's accounting)", "GPUs", _ex5,
            rel_tol=0.0,
            hint="bytes needed = parameters x the lecture's bytes per parameter for fp32 Adam training "
                 "(weights, gradients, Adam's two states, activations); divide by one GPU's memory and "
                 "round up -- you cannot rent a fraction of a GPU",
            mistakes=lambda: [
                (gpus_needed(30e9, "A100-80", "finetune"),
                 "that only holds the model states: pre-training also needs the lecture's 8 bytes per "
                 "parameter of activations"),
                (_ex5() - 1, "that many GPUs would not hold all the bytes: check how you turned the division "
                             "into a whole number of GPUs"),
            ],
        ),
        Exercise(
            "ex6", "make a 7B full fine-tune fit on one A100 80 GB", "option", _make_it_fit_expected,
            rel_tol=0.0,
            hint="compute the bytes per parameter of each option's weights, gradients and optimizer states",
            mistakes=_make_it_fit_mistakes,
            choices={k: text for k, (_, _, text) in MAKE_IT_FIT_OPTIONS.items()},
        ),
    ]
}

#: Every lab's exercises, by exercise id (ids are unique across labs).
EXERCISES: dict[str, Exercise] = {**LAB01}


# ---------------------------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------------------------


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise ``exercise_id``; a ``ValueError`` listing the valid ids otherwise."""
    try:
        return EXERCISES[exercise_id]
    except (KeyError, TypeError):
        raise ValueError(
            f"exercise_id={exercise_id!r} is not valid; choose one of {tuple(EXERCISES)}"
        ) from None


def expected_answer(exercise_id: str):
    """The expected answer, computed by the library (for tests and instructors; learners use :func:`check`)."""
    return get_exercise(exercise_id).expected()


def _close(a: float, b: float, rel_tol: float) -> bool:
    return abs(a - b) <= rel_tol * abs(b) + 1e-12


def _judge(ex: Exercise, answer) -> tuple[str, str]:
    """(status, text) for an answer that is not None."""
    if ex.categorical:
        options = ", ".join(repr(k) for k in ex.choices)
        if not isinstance(answer, str):
            return "invalid", (f"cannot check a {type(answer).__name__} ({answer!r}): answer with one of "
                               f"the option letters {options}, as a string")
        given = answer.strip().casefold()
        if given not in ex.choices:
            return "invalid", f"{answer!r} is not one of the options {options}"
        if given == str(ex.expected()).casefold():
            return "correct", "correct"
        for option, hint in ex.mistakes():
            if given == str(option).casefold():
                return "not quite", f"not quite: {hint}"
        return "not quite", f"not quite: {ex.hint}"

    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return "invalid", (f"cannot check a {type(answer).__name__} ({answer!r}): answer with a plain "
                           f"number in {ex.unit}, without units or quotes")
    try:
        value = float(answer)
    except (OverflowError, TypeError, ValueError):  # e.g. 10**400, or a number type float() cannot convert
        value = math.inf
    if not math.isfinite(value):
        shown = repr(answer) if len(repr(answer)) <= 40 else repr(answer)[:20] + "..."  # 10**400 has 401 digits
        return "invalid", f"cannot check {shown}: answer with a finite number in {ex.unit}"
    expected = float(ex.expected())
    if _close(value, expected, ex.rel_tol):
        return "correct", "correct"
    for wrong, hint in ex.mistakes():
        if not _close(float(wrong), expected, ex.rel_tol) and _close(value, float(wrong), max(ex.rel_tol, 1e-9)):
            return "not quite", f"not quite: {hint}"
    return "not quite", f"not quite: {ex.hint}"


def check(exercise_id: str, answer, *, strict: bool = False) -> Verdict:
    """Check a learner's ``answer`` to ``exercise_id``; returns a :class:`Verdict` (shown as one line).

    ``None`` -> "not answered yet". ``strict=True`` raises ``AssertionError`` unless the answer is correct.
    """
    ex = get_exercise(exercise_id)
    if answer is None:
        status, text = "not answered", "not answered yet -- replace None with your answer and run the cell again"
    else:
        status, text = _judge(ex, answer)
    verdict = Verdict(exercise_id, status, f"{exercise_id}: {text}")
    if strict and not verdict.ok:
        raise AssertionError(verdict.message)
    return verdict
