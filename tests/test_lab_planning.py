"""Lab 4 (utils/lab_planning.py, utils/lab_sweep.py): the solutions pass every check; for each exercise a deliberately wrong and
an invalid answer are caught with the intended message; the given runs are consistent."""

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
from lab_asserts import _verdict, stub

from utils import lab_planning as lab
from utils import lab_sweep
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
    (lambda n, loss: lab_sweep._linear_parabola(n, loss), "wrong", ["against log N"]),
    (lambda n, loss: SOL["isoflop_optimum"](n, loss)[0], "invalid", ["not a tuple"]),
])
def test_isoflop_optimum(fn, status, words):
    _verdict(lab.check_isoflop_optimum(fn), status, words)


def _frontier():
    optima = [SOL["isoflop_optimum"](*lab.runs_of(c))[0] for c in BUDGETS]
    return optima, SOL["power_law"](list(BUDGETS), optima)[1], [c / (6 * n) / n for c, n in zip(BUDGETS, optima)]


def test_given_frontier():
    optima, a, ratios = _frontier()
    assert 0.5 < a < 0.73 and ratios[0] > ratios[1] > ratios[2]  # the lab's prose: between Chinchilla and Kaplan
    _verdict(lab.check_given_frontier(optima, a, ratios), "correct", ["three optima"])
    _verdict(lab.check_given_frontier(np.array(optima), a, np.array(ratios)), "correct")
    _verdict(lab.check_given_frontier(None, None, None), "not done yet")
    _verdict(lab.check_given_frontier(None, a, ratios), "not done yet")  # cell 37 needs optima: it is checked
    best = [lab_sweep._best_measured(*lab.runs_of(c))[0] for c in BUDGETS]
    _verdict(lab.check_given_frontier(best, a, ratios), "wrong", ["optima:", "best runs measured"])
    _verdict(lab.check_given_frontier(optima[::-1], a, ratios), "wrong", ["smallest budget first"])
    _verdict(lab.check_given_frontier([SOL["isoflop_optimum"](*lab.runs_of(c)) for c in BUDGETS], a, ratios),
             "invalid", ["optima:"])
    _verdict(lab.check_given_frontier(optima, 1 - a, ratios), "wrong", ["optima correct; exponent:", "exponent of D_opt"])
    _verdict(lab.check_given_frontier(optima, a, ratios[::-1]), "wrong", ["optima and exponent correct",
                                                                          "smallest budget first"])
    _verdict(lab.check_given_frontier(optima, a, [1 / r for r in ratios]), "wrong", ["D / N"])
    _verdict(lab.check_given_frontier(optima, "0.58", ratios), "invalid", ["str"])
    _verdict(lab.check_given_frontier(optima, a, ratios[:2]), "invalid", ["holds 2 values"])


def test_embedding_share_matches_the_models_and_the_lab_prose():
    from utils.models import build_model, count_parameters, model_config

    given = sorted({n for _, n, _, _ in lab.GIVEN_RUNS})
    assert given == sorted(lab_sweep._counts(s).total for s in lab.GIVEN_SHAPES)  # the shapes are the given runs' sizes
    for shape in lab.GIVEN_SHAPES[:2] + lab.MY_SHAPES[:1]:
        counts = count_parameters(build_model(model_config("decoder", "small", 1024, max_seq_len=64,
                                                          d_ff=4 * shape["d_model"], **shape)))
        assert lab.embedding_share(counts.total) == counts.embedding / counts.total
    shares = [lab.embedding_share(n) for n in given]
    assert 0.25 < min(shares) < 0.3 and max(shares) > 0.8  # "from a quarter to over four fifths"
    with pytest.raises(ValueError, match="n_params_total"):
        lab.embedding_share(12345)


def _runs(losses=(4.99, 4.945, 5.54), shapes=lab.MY_SHAPES, budget=3e10, **changes):
    sizes = [lab_sweep._counts(s).total for s in shapes]
    return [{**dict(compute_flops=budget, shape=lab_sweep._full_shape(s), **lab.SWEEP_SETTINGS, count="total",
                    n_params_total=n, n_params=n // 3, loss=loss, steps=100), **changes}
            for s, n, loss in zip(shapes, sizes, losses)]


def test_my_optimum():
    runs = _runs()
    assert [r["n_params_total"] for r in runs] == [9592, 20720, 40608]  # the sizes the lab's prose names
    good = SOL["isoflop_optimum"]([r["n_params_total"] for r in runs], [r["loss"] for r in runs])
    _verdict(lab.check_my_optimum(runs, good, 3e10), "correct")
    _verdict(lab.check_my_optimum(runs, np.array(good), 3e10 * (1 + 1e-12)), "correct")  # float tolerance
    _verdict(lab.check_my_optimum(runs, None, 3e10), "not done yet")
    _verdict(lab.check_my_optimum(runs, (20720.0, 4.945), 3e10), "wrong", ["not the best run"])
    non_emb = SOL["isoflop_optimum"]([r["n_params"] for r in runs], [r["loss"] for r in runs])
    _verdict(lab.check_my_optimum(runs, non_emb, 3e10), "wrong", ["n_params_total"])
    _verdict(lab.check_my_optimum(runs[:2], good, 3e10), "wrong", ["3 shapes"])
    _verdict(lab.check_my_optimum(runs[:2] + _runs(budget=1e11)[2:], good, 3e10), "wrong", ["MY_BUDGET"])
    _verdict(lab.check_my_optimum(_runs(budget=3e9), good, 3e10), "wrong", ["3e+09 FLOPs", "MY_BUDGET"])
    other = ({**lab.MY_SHAPES[0], "d_model": 12},) + lab.MY_SHAPES[1:]
    _verdict(lab.check_my_optimum(_runs(shapes=other), good, 3e10), "wrong", ["not one of MY_SHAPES"])
    _verdict(lab.check_my_optimum(_runs(batch_size=8), good, 3e10), "wrong", ["batch_size=8", "SWEEP_SETTINGS"])
    _verdict(lab.check_my_optimum(_runs(lr=1e-3, eval_batches=32), good, 3e10), "wrong", ["lr=0.001", "eval_batches=32"])
    _verdict(lab.check_my_optimum(_runs(count="non_embedding"), good, 3e10), "wrong", ["count='non_embedding'"])
    missing = [{k: v for k, v in r.items() if k not in ("shape", "seq_len")} for r in runs]
    _verdict(lab.check_my_optimum(missing, good, 3e10), "invalid", ["lacks ['shape', 'seq_len']"])
    _verdict(lab.check_my_optimum(_runs(loss="4.9"), good, 3e10), "invalid", ["'loss'"])
    _verdict(lab.check_my_optimum("runs", good, 3e10), "invalid", ["train_for_budget"])
    _verdict(lab.check_my_optimum(runs, "good", 3e10), "invalid", ["str"])
    with pytest.raises(ValueError, match="budget"):
        lab.check_my_optimum(runs, good, None)


def test_my_optimum_accepts_real_train_for_budget_results(tmp_path):
    """The keys and the shape record the check reads are what train_for_budget returns (a tiny real run)."""
    import torch

    from utils.scaling import train_for_budget

    ids = torch.arange(4096) % 97
    shape = lab.MY_SHAPES[0]
    settings = {**lab.SWEEP_SETTINGS, "eval_batches": 2}
    run = train_for_budget(2e8, ids, ids[:1024], shape, **settings)
    assert set(lab.RUN_KEYS) <= set(run) and run["shape"] == lab_sweep._full_shape(shape)
    assert lab_sweep._runs_problem([run], 2e8).message.startswith("my_runs[0] was trained with eval_batches=2")


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


def test_the_plan_cases_are_what_their_labels_say():
    """Three of the six cases are data-limited (as labs/README.md says), the made-up law's among them."""
    cases = lab.plan_cases()
    limited = [c.label for c in cases if lab._plan(*c.args)["n_tokens"] < lab._optimal(lab._plan(*c.args)["flops"],
                                                                                        c.args[5])[1]]
    assert len(cases) == 6 and len(limited) == 3 and "a made-up law that wants data" in limited, limited
    hungry = lab._LAWS["data-hungry"]
    ratios = [d / n for n, d in (lab._optimal(c, hungry) for c in (1e18, 1e21, 1e24))]
    assert ratios[0] > 1000 and ratios[0] < ratios[1] < ratios[2]  # it wants more data per parameter as C grows


def test_the_plan_prose_a_data_limit_raises_the_loss():
    law = CHINCHILLA_FITS["besiroglu"]
    plenty, short = (SOL["plan_budget"](2048, 30, 989e12, 0.4, 3.29, law, d) for d in (15e12, 2e12))
    assert short["n_tokens"] == 2e12 < plenty["n_tokens"] and short["loss"] > plenty["loss"]
    assert short["cost"] == plenty["cost"]
    assert 1e-4 < short["loss"] - plenty["loss"] < 1e-3  # "a few ten-thousandths of a nat" (the lab's assert)
