"""Lab 3 (utils/lab_shard.py): the solutions pass every check; for each exercise a deliberately wrong and an
invalid answer are caught with the intended message; no message gives the expected value away."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from lab_asserts import _verdict, stub

from utils import lab_shard as lab
from utils.strategies import FP32_ADAMW

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_student_labs as msl  # noqa: E402

SOLUTIONS = ROOT / "labs" / "solutions" / "03_shard_a_model_solutions.ipynb"


class _Solutions(dict):
    """The solution notebook's namespace (scripts/make_student_labs.py's loader: the one source of truth), loaded
    when the first test runs: its exercise-5 cell launches a run, which collection should not wait for."""

    def load(self):
        if not self:
            self.update(msl.load_solutions(SOLUTIONS))


SOL = _Solutions()


@pytest.fixture(autouse=True, scope="module")
def _solutions_loaded():  # before any check runs: a learner function gets only seconds inside a check
    SOL.load()


# ---- exercise 1: local_bytes


def _global_size(tensors):
    return sum(t.numel() * t.element_size() for t in {id(t): t for t in tensors if t is not None}.values())


def _twice(tensors):
    return sum(SOL["local_bytes"]([t]) for t in tensors)


@pytest.mark.parametrize("fn, status, words", [
    (lambda ts: SOL["local_bytes"](ts), "correct", ["12 cases"]),
    (stub, "not done yet", ["NotImplementedError"]),
    (_global_size, "wrong", ["DTensor", "local shard"]),
    (_twice, "wrong", ["tied weights", "held once"]),
    (lambda ts: sum(t.numel() * t.element_size() for t in ts), "invalid", ["raised AttributeError"]),
    (lambda ts: str(SOL["local_bytes"](ts)), "invalid", ["str", "not a number"]),
    (lambda ts: float("nan"), "invalid", ["NaN"]),
])
def test_local_bytes(fn, status, words):
    _verdict(lab.check_local_bytes(fn), status, words)


# ---- exercise 2: measure (runs real processes: the reference runs are cached for the whole session)


def _at_rest(strategy, world_size, shard_factor=None):
    return [r.param_bytes + r.grad_bytes + r.optimizer_bytes for r in lab._reports(strategy, world_size, shard_factor)]


def test_measure_solution_and_mistakes():
    _verdict(lab.check_measure(SOL["measure"]), "correct", ["5 cases"])
    _verdict(lab.check_measure(_at_rest), "wrong", ["zero2", "during the step"])
    _verdict(lab.check_measure(lambda s, n, shard_factor=None: sum(_at_rest(s, n, shard_factor))), "invalid",
             ["not a tuple of 2 values"])
    _verdict(lab.check_measure(stub), "not done yet")


# ---- exercise 3: predict_bytes


def _as(strategy_from, strategy_to):
    def wrong(n, strategy, world_size, shard_factor=None, **kw):
        if strategy == strategy_from:
            strategy, shard_factor = strategy_to, None
        return SOL["predict_bytes"](n, strategy, world_size, shard_factor, **kw)

    return wrong


@pytest.mark.parametrize("fn, status, words", [
    (lambda *a, **k: SOL["predict_bytes"](*a, **k), "correct", ["zero_memory_per_device", "measured runs"]),
    (stub, "not done yet", []),
    (_as("zero2", "zero1"), "wrong", ["'zero2'", "stage 2 shards the gradients"]),
    (_as("hybrid", "zero3"), "wrong", ["'hybrid'", "within a group of shard_factor"]),
    (lambda n, s, w, f=None, **kw: SOL["predict_bytes"](n, s, w, f), "wrong", ["mixed-precision", "passed as"]),
    (lambda n, s, w, f=None, **kw: SOL["predict_bytes"](n, s, w, f, **kw) / n, "wrong", ["bytes per parameter"]),
    (lambda *a, **k: "1e6", "invalid", ["str", "not a number"]),
    (lambda *a, **k: 1 / 0, "invalid", ["ZeroDivisionError"]),
])
def test_predict_bytes(fn, status, words):
    _verdict(lab.check_predict_bytes(fn), status, words)


def test_predict_bytes_never_shows_the_expected_value():
    result = lab.check_predict_bytes(_as("zero2", "zero1"))
    expected = lab._predict(lab.lab_model_params(), "zero2", 2)  # 1,349,120 bytes
    for text in (f"{expected:,.0f}", f"{expected:.0f}", f"{expected:.6g}", f"{expected:g}"):
        assert text not in result.message + (result.hint or "")


# ---- exercise 4: choose_shard_factor


def _with(op):
    def choose(n_params, world_size, memory_limit, *, activation_bytes=0.0, weight_bytes=2, gradient_bytes=2,
               optimizer_bytes=12):
        per_param = weight_bytes + gradient_bytes + optimizer_bytes
        for f in range(1, world_size + 1):
            if world_size % f == 0 and op(per_param * n_params / f + activation_bytes, memory_limit):
                return f
        return None

    return choose


@pytest.mark.parametrize("fn, status, words", [
    (lambda *a, **k: SOL["choose_shard_factor"](*a, **k), "correct", ["13 choices"]),
    (stub, "not done yet", []),
    (_with(lambda need, limit: need < limit), "wrong", ["exactly at the limit", "a smaller factor also fits"]),
    (lambda n, w, limit, activation_bytes=0.0, **kw: SOL["choose_shard_factor"](n, w, limit, **kw), "wrong",
     ["more than the limit", "room for the activations"]),
    (lambda n, w, *a, **k: w, "wrong", ["a smaller factor also fits", "smallest"]),
    (lambda n, w, *a, **k: 3, "wrong", ["does not divide", "divisors"]),
    (lambda *a, **k: None, "wrong", ["returned None", "some sharding factor fits"]),
    (lambda n, w, *a, **k: 1, "wrong", ["f=1", "more than the limit"]),
    (lambda *a, **k: 2.0, "invalid", ["return an int"]),
    (lambda *a, **k: [][0], "invalid", ["IndexError"]),
])
def test_choose_shard_factor(fn, status, words):
    _verdict(lab.check_shard_factor(fn), status, words)


# ---- exercise 5: the chosen run (reports stand-ins: the check reads strategy and bytes only)


def _reports(strategy, per_rank, n=lab.RUN_WORLD_SIZE):
    return [SimpleNamespace(strategy=strategy, model_state_bytes=per_rank, rank=r) for r in range(n)]


def test_chosen_run():
    best = lab._smallest_factor(lab.lab_model_params(), lab.RUN_WORLD_SIZE, lab.RUN_LIMIT_BYTES, **FP32_ADAMW)
    assert best == SOL["choose_shard_factor"](lab.lab_model_params(), lab.RUN_WORLD_SIZE, lab.RUN_LIMIT_BYTES,
                                              **FP32_ADAMW)
    assert 1 < best < lab.RUN_WORLD_SIZE  # the exercise needs hybrid sharding: neither DDP nor full sharding
    fits = lab._predict(lab.lab_model_params(), "hybrid", lab.RUN_WORLD_SIZE, best)
    _verdict(lab.check_chosen_run(SOL["chosen_factor"], SOL["chosen_reports"]), "correct")  # a real run
    _verdict(lab.check_chosen_run(None, None), "not done yet")
    _verdict(lab.check_chosen_run(best, _reports("hybrid", int(fits))), "correct")
    _verdict(lab.check_chosen_run(lab.RUN_WORLD_SIZE, _reports("zero3", int(fits) // 2)), "wrong",
             ["a smaller factor also fits"])
    _verdict(lab.check_chosen_run(best, _reports("zero3", int(fits) // 2)), "wrong", ["does not shard in groups"])
    _verdict(lab.check_chosen_run(best, _reports("hybrid", int(fits), 2)), "wrong", ["2 rank(s)"])
    _verdict(lab.check_chosen_run(best, _reports("hybrid", lab.RUN_LIMIT_BYTES + 1)), "wrong", ["more than the limit"])
    _verdict(lab.check_chosen_run(best, "reports"), "invalid", ["utils.strategies.run"])
    _verdict(lab.check_chosen_run("2", _reports("hybrid", int(fits))), "invalid", ["return an int"])
