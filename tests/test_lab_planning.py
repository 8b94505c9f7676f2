"""Lab 4 (utils/lab_planning.py): the solutions pass every check; for each exercise a deliberately wrong and
an invalid answer are caught with the intended message; the given runs are consistent."""

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
from lab_asserts import _verdict, stub

from utils import lab_planning as lab
from utils.scaling import CHINCHILLA_FITS, isoflop_minimum

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "labs" / "solutions" / "04_compute_optimal_planning_solutions.ipynb"


def _solution_functions(path: Path) -> dict:
    """The imports cell and every solution cell that defines a function, run from the one source of truth."""
    cells = [c for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "code" and "colab-setup" not in c.metadata.get("tags", [])]
    namespace: dict = {}
    for c in [cells[0].source.replace("%matplotlib inline", "")] + [
            c.source for c in cells if c.metadata.get("nbgrader", {}).get("solution")
            and c.source.lstrip().startswith("def ")]:
        exec(compile(c, path.name, "exec"), namespace)  # noqa: S102
    return namespace


SOL = _solution_functions(SOLUTIONS)
BUDGETS = (1e11, 3e11, 9e11)


def test_the_given_runs_spend_their_budgets_and_have_a_valley():
    for c, n, d, loss in lab.GIVEN_RUNS:
        assert abs(6 * n * d / c - 1) < 0.01 and 4 < loss < 6
    for c in BUDGETS:
        n, losses = lab.runs_of(c)
        assert len(n) == 5 and min(n) < isoflop_minimum(n, losses)[0] < max(n)  # each bottom inside its sizes
    with pytest.raises(ValueError, match="budget"):
        lab.runs_of(2e11)


@pytest.mark.parametrize("fn, status, words", [
    (lambda *a, **k: SOL["params_and_tokens"](*a, **k), "correct", ["9 cases"]),
    (stub, "not done yet", []),
    (lambda c, tokens_per_param=20.0: SOL["params_and_tokens"](6 * c, tokens_per_param), "wrong", ["6 FLOPs per token"]),
    (lambda c, tokens_per_param=20.0: SOL["params_and_tokens"](c, tokens_per_param)[::-1], "wrong", ["(parameters, tokens)"]),
    (lambda c, tokens_per_param=20.0: SOL["params_and_tokens"](c), "wrong", ["tokens_per_param passed in"]),
    (lambda c, tokens_per_param=20.0: np.array(SOL["params_and_tokens"](c, tokens_per_param)), "correct", []),  # a NumPy pair is fine
    (lambda c, tokens_per_param=20.0: SOL["params_and_tokens"](c, tokens_per_param)[0], "invalid", ["not a tuple of 2 values"]),
    (lambda c, tokens_per_param=20.0: (float("inf"), 1.0), "invalid", ["infinite"]),
])
def test_params_and_tokens(fn, status, words):
    _verdict(lab.check_params_and_tokens(fn), status, words)


def _cost(change):
    def fn(c, peak, n, mfu, price):
        return change(SOL["time_and_cost"](c, peak, n, mfu, price), n, mfu)

    return fn


@pytest.mark.parametrize("fn, status, words", [
    (_cost(lambda out, n, m: out), "correct", ["7 cases"]),
    (stub, "not done yet", []),
    (_cost(lambda out, n, m: {**out, "days": out["days"] * m}), "wrong", ["'days'", "fraction mfu"]),
    (_cost(lambda out, n, m: {**out, "days": out["days"] * 24}), "wrong", ["days, not hours"]),
    (_cost(lambda out, n, m: {**out, "cost": out["cost"] / n}), "wrong", ["'cost'", "every GPU"]),
    (_cost(lambda out, n, m: {k: v for k, v in out.items() if k != "cost"}), "invalid", ["missing ['cost']"]),
    (_cost(lambda out, n, m: out["days"]), "invalid", ["not a dict"]),
])
def test_time_and_cost(fn, status, words):
    _verdict(lab.check_time_and_cost(fn), status, words)


def _grid_search(c, law):  # a numerical answer (no closed form) must pass within the stated 1%
    n = np.geomspace(1.0, c / 6, 400_001)
    loss = law.E + law.A / n**law.alpha + law.B / (c / (6 * n)) ** law.beta
    best = n[int(np.argmin(loss))]
    return best, c / (6 * best)


@pytest.mark.parametrize("fn, status, words", [
    (lambda *a: SOL["compute_optimal"](*a), "correct", ["12 cases"]),
    (_grid_search, "correct", []),
    (stub, "not done yet", []),
    (lambda c, law: SOL["params_and_tokens"](c), "wrong", ["20 tokens per parameter", "balances"]),
    (lambda c, law: SOL["compute_optimal"](c, law)[::-1], "wrong", ["(parameters, tokens)"]),
    (lambda c, law: (SOL["compute_optimal"](c, law)[0], 1.0), "wrong", ["do not spend the budget"]),
    (lambda c, law: law.A, "invalid", ["not a tuple"]),
])
def test_compute_optimal(fn, status, words):
    _verdict(lab.check_compute_optimal(fn), status, words)


def _linear_fit(x, y):
    p, k = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return k, p


@pytest.mark.parametrize("fn, status, words", [
    (lambda *a: SOL["power_law"](*a), "correct", ["5 cases"]),
    (stub, "not done yet", []),
    (lambda x, y: (math.log(SOL["power_law"](x, y)[0]), SOL["power_law"](x, y)[1]), "wrong", ["not its logarithm"]),
    (lambda x, y: SOL["power_law"](x, y)[::-1], "wrong", ["(k, p)"]),
    (_linear_fit, "wrong", []),
    (lambda x, y: (float("nan"), 0.5), "invalid", ["NaN"]),
    (lambda x, y: {"k": 1, "p": 2}, "invalid", ["dict"]),
])
def test_power_law(fn, status, words):
    _verdict(lab.check_power_law(fn), status, words)


def _best_run(n, losses):
    i = int(np.argmin(losses))
    return float(np.asarray(n)[i]), float(np.asarray(losses)[i])


@pytest.mark.parametrize("fn, status, words", [
    (lambda *a: SOL["isoflop_optimum"](*a), "correct", ["8 cases"]),
    (stub, "not done yet", []),
    (_best_run, "wrong", ["best run measured", "parabola"]),
    (lambda n, loss: (math.log(SOL["isoflop_optimum"](n, loss)[0]), SOL["isoflop_optimum"](n, loss)[1]), "wrong", ["not log N"]),
    (lambda n, loss: lab._linear_parabola(n, loss), "wrong", ["against log N"]),
    (lambda n, loss: SOL["isoflop_optimum"](n, loss)[0], "invalid", ["not a tuple"]),
])
def test_isoflop_optimum(fn, status, words):
    _verdict(lab.check_isoflop_optimum(fn), status, words)


def _frontier():
    optima = [SOL["isoflop_optimum"](*lab.runs_of(c))[0] for c in BUDGETS]
    return SOL["power_law"](list(BUDGETS), optima)[1], [c / (6 * n) / n for c, n in zip(BUDGETS, optima)]


def test_given_frontier():
    a, ratios = _frontier()
    assert 0.5 < a < 0.73 and ratios[0] > ratios[1] > ratios[2]  # the lab's prose: between Chinchilla and Kaplan
    _verdict(lab.check_given_frontier(a, ratios), "correct")
    _verdict(lab.check_given_frontier(a, np.array(ratios)), "correct")
    _verdict(lab.check_given_frontier(None, None), "not done yet")
    _verdict(lab.check_given_frontier(1 - a, ratios), "wrong", ["exponent of D_opt"])
    _verdict(lab.check_given_frontier(a, ratios[::-1]), "wrong", ["smallest budget first"])
    _verdict(lab.check_given_frontier(a, [1 / r for r in ratios]), "wrong", ["D / N"])
    _verdict(lab.check_given_frontier("0.58", ratios), "invalid", ["str"])
    _verdict(lab.check_given_frontier(a, ratios[:2]), "invalid", ["holds 2 values"])


def _runs(losses=(4.99, 4.945, 5.54), sizes=(9592, 20720, 40608), budget=3e10):
    return [dict(compute_flops=budget, n_params_total=n, n_params=n // 3, loss=loss) for n, loss in zip(sizes, losses)]


def test_my_optimum():
    runs = _runs()
    good = SOL["isoflop_optimum"]([r["n_params_total"] for r in runs], [r["loss"] for r in runs])
    _verdict(lab.check_my_optimum(runs, good), "correct")
    _verdict(lab.check_my_optimum(runs, None), "not done yet")
    _verdict(lab.check_my_optimum(runs, (20720.0, 4.945)), "wrong", ["not the best run"])
    non_emb = SOL["isoflop_optimum"]([r["n_params"] for r in runs], [r["loss"] for r in runs])
    _verdict(lab.check_my_optimum(runs, non_emb), "wrong", ["n_params_total"])
    _verdict(lab.check_my_optimum(runs[:2], good), "wrong", ["at least 3 sizes"])
    _verdict(lab.check_my_optimum(runs[:2] + _runs(budget=1e11)[2:], good), "wrong", ["one budget"])
    _verdict(lab.check_my_optimum("runs", good), "invalid", ["train_for_budget"])
    _verdict(lab.check_my_optimum(runs, "good"), "invalid", ["str"])


def _plan_without_data_limit(n_gpus, days, peak, mfu, price, law, tokens):
    return SOL["plan_budget"](n_gpus, days, peak, mfu, price, law, 1e30)


@pytest.mark.parametrize("fn, status, words", [
    (lambda *a: SOL["plan_budget"](*a), "correct", ["6 cases"]),
    (stub, "not done yet", []),
    (_plan_without_data_limit, "wrong", ["2T tokens", "all the data there is"]),
    (lambda *a: {**SOL["plan_budget"](*a), "cost": SOL["plan_budget"](*a)["cost"] / a[0]}, "wrong", ["every GPU"]),
    (lambda *a: {**SOL["plan_budget"](*a), "loss": float("nan")}, "invalid", ["NaN"]),
    (lambda *a: list(SOL["plan_budget"](*a).values()), "invalid", ["not a dict"]),
])
def test_plan_budget(fn, status, words):
    _verdict(lab.check_plan(fn), status, words)


def test_the_plan_prose_a_data_limit_raises_the_loss():
    law = CHINCHILLA_FITS["besiroglu"]
    plenty, short = (SOL["plan_budget"](2048, 30, 989e12, 0.4, 3.29, law, d) for d in (15e12, 2e12))
    assert short["n_tokens"] == 2e12 < plenty["n_tokens"] and short["loss"] > plenty["loss"]
    assert short["cost"] == plenty["cost"]
