"""Checks for lab 04, "Compute-optimal planning": from a FLOP budget to parameters, tokens, days and cost;
fit power laws and iso-FLOP minima to runs; plan a budget under a data limit.

Every check calls the learner's function on many inputs and compares with the course library
(:mod:`utils.scaling`, :func:`utils.flops.budget_cost`); the reference computations are private, and a check
returns a :class:`utils.labs.Result`, never the expected value.
"""

from __future__ import annotations

import math

import numpy as np

from utils.flops import SECONDS_PER_DAY, budget_cost
from utils.labs import Result, case, check_function, check_value, close, describe
from utils.scaling import (
    CHINCHILLA_FITS,
    ChinchillaLaw,
    chinchilla_loss,
    chinchilla_optimal,
    isoflop_minimum,
    power_law_fit,
)

#: Fifteen runs of notebook 06's iso-FLOP sweep, measured on a 2-core CPU (2026-11-26): GPT-2-shaped
#: decoders (1,024-token BPE vocabulary on Python source, batch 4 x 64 tokens, cosine schedule to the run's
#: end), five sizes per budget. Each row: (budget C in FLOPs, parameters N (all, embeddings included),
#: training tokens D, held-out loss in nats per token). C = 6 N D up to rounding D to whole steps.
GIVEN_RUNS: tuple[tuple[float, int, int, float], ...] = (
    (1e11, 20720, 804352, 4.6136), (1e11, 24000, 694528, 4.6453), (1e11, 40608, 410368, 4.6148),
    (1e11, 60288, 276480, 4.7284), (1e11, 108864, 153088, 5.3204),
    (3e11, 24000, 2083328, 4.4858), (3e11, 40608, 1231360, 4.3420), (3e11, 60288, 829440, 4.3163),
    (3e11, 108864, 459264, 4.3650), (3e11, 169728, 294656, 4.5303),
    (9e11, 40608, 3693824, 4.2189), (9e11, 60288, 2488064, 4.1374), (9e11, 108864, 1377792, 4.0726),
    (9e11, 169728, 883712, 4.0574), (9e11, 320720, 467712, 4.2380),
)
#: The learner's own iso-FLOP runs (exercise 7): settings shared with the given runs, so losses compare.
SWEEP_SETTINGS = dict(batch_size=4, seq_len=64, lr=3e-3, eval_batches=128)
#: Three model shapes around the expected optimum of a 3e10-FLOP budget (9.6k, 20.7k and 40.6k parameters).
MY_SHAPES = (dict(n_layers=1, d_model=8, n_heads=1), dict(n_layers=1, d_model=16, n_heads=1),
             dict(n_layers=2, d_model=24, n_heads=1))


def runs_of(budget: float) -> tuple[list[int], list[float]]:
    """(parameters, losses) of the given runs at ``budget`` FLOPs."""
    rows = [(n, loss) for c, n, _, loss in GIVEN_RUNS if c == budget]
    if not rows:
        raise ValueError(f"budget={budget!r} is not valid; accepted: one of {sorted({r[0] for r in GIVEN_RUNS})}")
    return [n for n, _ in rows], [loss for _, loss in rows]


def _pair(fn):
    """The reference's pair as a tuple (the learner may return a tuple, a list or a NumPy array)."""
    return lambda *a, **k: tuple(fn(*a, **k))


def _arrays_as_lists(fn):
    """The learner's function with a NumPy array result turned into a list (so it compares as a sequence)."""
    if not callable(fn):
        return fn

    def call(*args, **kwargs):
        out = fn(*args, **kwargs)
        return out.tolist() if isinstance(out, np.ndarray) else out

    return call


# ------------------------------------------------------------------ exercise 1: budget -> N and D


def _params_and_tokens(compute_flops, tokens_per_param=20.0):
    n = math.sqrt(compute_flops / (6.0 * tokens_per_param))
    return n, tokens_per_param * n


def _scaled(factor):
    return lambda got, exp, c: close(tuple(got), (exp[0] * factor, exp[1] * factor), rtol=1e-6)


PARAMS_TOKENS_HINTS = [
    (lambda got, exp, c: close(tuple(got), (exp[1], exp[0])), "return (parameters, tokens), in that order"),
    (_scaled(math.sqrt(6)), "each parameter costs 6 FLOPs per token in training (2 forward, 4 backward)"),
    (_scaled(math.sqrt(3)), "training counts the backward pass too: 6 FLOPs per parameter per token, not 2"),
    (lambda got, exp, c: close(tuple(got), _params_and_tokens(c.args[0])),
     "use the tokens_per_param passed in (the cases vary it)"),
]


def check_params_and_tokens(fn) -> Result:
    """Exercise 1: ``fn(compute_flops, tokens_per_param=20.0) -> (n_params, n_tokens)`` with C = 6 N D."""
    cases = [case(5.88e23, label="Chinchilla's budget, 20 tokens per parameter"),
             case(3.14e23, 20.0, label="GPT-3's budget"), case(1e15), case(1e11, 20.0), case(1e27),
             case(6.0, 1.0, label="C = 6, one token per parameter"), case(1e21, 1.0), case(1e21, 100.0),
             case(2.6e24, tokens_per_param=0.5, label="half a token per parameter")]
    return check_function(_arrays_as_lists(fn), _pair(_params_and_tokens), cases, name="params_and_tokens", rtol=1e-9,
                          hints=PARAMS_TOKENS_HINTS)


# ------------------------------------------------------------------ exercise 2: days, GPU-hours, cost


def _time_and_cost(compute_flops, peak_flops, n_gpus, mfu, price_per_gpu_hour):
    run = budget_cost(compute_flops, n_gpus * mfu * peak_flops, n_gpus * price_per_gpu_hour)
    return {"days": run.days, "gpu_hours": n_gpus * run.seconds / 3600, "cost": run.cost}


def _key(name, factor):
    return lambda got, exp, c: close(got[name], exp[name] * factor(*c.args), rtol=1e-6)


COST_HINTS = [
    (_key("days", lambda c, p, n, m, price: m), "the GPUs reach only a fraction mfu of their peak"),
    (_key("days", lambda *a: 24), "days, not hours"),
    (_key("days", lambda c, p, n, m, price: n), "the budget is shared by all n_gpus GPUs: wall-clock time falls"),
    (_key("gpu_hours", lambda c, p, n, m, price: 1 / n), "GPU-hours count every GPU: GPUs x hours"),
    (_key("cost", lambda c, p, n, m, price: 1 / n), "you pay for every GPU for the whole run"),
]


def check_time_and_cost(fn) -> Result:
    """Exercise 2: ``fn(compute_flops, peak_flops, n_gpus, mfu, price_per_gpu_hour) -> dict(days=, gpu_hours=,
    cost=)``: wall-clock days, GPU-hours and money for a budget on ``n_gpus`` GPUs at ``mfu`` of their peak."""
    cases = [case(3.14e23, 312e12, 1024, 0.4, 1.79, label="GPT-3 on 1,024 A100s at 40%"),
             case(5.88e23, 989e12, 2048, 0.45, 3.29, label="Chinchilla on 2,048 H100s at 45%"),
             case(1e21, 65e12, 1, 0.3, 0.35, label="one T4"), case(1e18, 312e12, 8, 1.0, 1.79, label="MFU = 1"),
             case(8.64e19, 1e15, 1, 1.0, 1.0, label="one petaflop/s-day at 1 PFLOP/s"),
             case(1e24, 989e12, 4096, 0.38, 0.0, label="free GPUs (price 0)"), case(5e20, 121e12, 3, 0.5, 0.7)]
    return check_function(fn, _time_and_cost, cases, name="time_and_cost", rtol=1e-9, atol=1e-9, hints=COST_HINTS)


# ------------------------------------------------------------------ exercise 3: the compute-optimal split

_LAWS = {"hoffmann": CHINCHILLA_FITS["hoffmann"], "besiroglu": CHINCHILLA_FITS["besiroglu"],
         "alpha = beta": ChinchillaLaw(1.8, 400.0, 400.0, 0.3, 0.3, "made up: equal exponents"),
         "data-hungry": ChinchillaLaw(2.0, 100.0, 3000.0, 0.25, 0.45, "made up")}


def _optimal(compute_flops, law):
    return chinchilla_optimal(compute_flops, fit=law)


OPTIMAL_HINTS = [
    (lambda got, exp, c: close(tuple(got), _params_and_tokens(c.args[0]), rtol=1e-3),
     "20 tokens per parameter is what one law (and Chinchilla's approaches 1-2) gives; this law balances its "
     "two terms differently: minimise its loss along 6 N D = C"),
    (lambda got, exp, c: close(tuple(got), (exp[1], exp[0]), rtol=1e-2), "return (parameters, tokens), in that order"),
    (lambda got, exp, c: got[0] * got[1] * 6 > 1.05 * c.args[0] or got[0] * got[1] * 6 < 0.95 * c.args[0],
     "your N and D do not spend the budget: 6 N D should equal the compute"),
]


def check_compute_optimal(fn) -> Result:
    """Exercise 3: ``fn(compute_flops, law) -> (n_params, n_tokens)`` minimising ``law``'s loss on 6ND = C,
    within 1% of :func:`utils.scaling.chinchilla_optimal` (a numerical search passes too)."""
    cases = [case(c, law, label=f"C = {c:.0e}, {name} law") for name, law in _LAWS.items()
             for c in (1e18, 5.88e23, 1e26)]
    return check_function(_arrays_as_lists(fn), _pair(_optimal), cases, name="compute_optimal", rtol=1e-2, time_limit_s=20,
                          hints=OPTIMAL_HINTS)


# ------------------------------------------------------------------ exercise 4: a power law through points

POWER_HINTS = [
    (lambda got, exp, c: close(tuple(got), (exp[1], exp[0])), "return (k, p), in that order"),
    (lambda got, exp, c: close(tuple(got), (math.log(exp[0]), exp[1])) or
     close(tuple(got), (math.log10(exp[0]), exp[1])), "return k itself, not its logarithm"),
    (lambda got, exp, c: close(got[1], exp[1], rtol=1e-6),
     "your exponent is right but k is not: a straight line through (log x, log y) has intercept log k"),
]


def check_power_law(fn) -> Result:
    """Exercise 4: ``fn(x, y) -> (k, p)``, the least-squares line through (log x, log y): y ~ k x^p."""
    rng = np.random.default_rng(0)
    x = np.geomspace(1e18, 1e22, 6)
    noisy = 0.3 * x**0.5 * np.exp(rng.normal(0, 0.05, 6))
    given_c = [1e11, 3e11, 9e11]
    cases = [case(list(x), list(2.0 * x**0.5), label="an exact power law, p = 0.5"),
             case(list(x), list(noisy), label="a noisy power law"),
             case([1.0, 10.0], [3.0, 0.3], label="two points, falling"),
             case(given_c, [31711.0, 60960.0, 114143.0], label="three iso-FLOP optima"),
             case(np.array([2.0, 8.0, 4.0, 16.0]), np.array([5.0, 9.0, 7.5, 12.0]), label="numpy arrays, unsorted")]
    return check_function(_arrays_as_lists(fn), _pair(power_law_fit), cases, name="power_law", rtol=1e-6, hints=POWER_HINTS)


# ------------------------------------------------------------------ exercise 5: an iso-FLOP curve's bottom


def _best_measured(n, losses):
    i = int(np.argmin(losses))
    return float(np.asarray(n)[i]), float(np.asarray(losses)[i])


def _linear_parabola(n, losses):
    c2, c1, c0 = np.polyfit(np.asarray(n, float), np.asarray(losses, float), 2)
    x = -c1 / (2 * c2)
    return x, c0 + c1 * x + c2 * x * x


ISOFLOP_HINTS = [
    (lambda got, exp, c: close(tuple(got), _best_measured(*c.args)),
     "that is the best run measured; the exercise asks for the bottom of the fitted parabola (it can lie "
     "between the sizes tried)"),
    (lambda got, exp, c: close(tuple(got), (math.log(exp[0]), exp[1])) or
     close(tuple(got), (math.log10(exp[0]), exp[1])), "return the number of parameters N, not log N"),
    (lambda got, exp, c: close(tuple(got), _linear_parabola(*c.args), rtol=1e-4),
     "fit the parabola against log N, not N: the curves are parabolas on a log axis"),
]


def _synthetic_isoflop(budget=1e20, law="besiroglu", span=(0.2, 5.0), k=5):
    n_opt = chinchilla_optimal(budget, fit=law)[0]
    n = n_opt * np.geomspace(*span, k)
    return list(n), list(chinchilla_loss(n, budget / (6 * n), fit=law))


def check_isoflop_optimum(fn) -> Result:
    """Exercise 5: ``fn(n_params, losses) -> (n_best, loss_best)``: the bottom of the parabola fitted to loss
    against log N, as :func:`utils.scaling.isoflop_minimum` (Chinchilla's approach 2)."""
    cases = [case(*runs_of(c), label=f"the given runs at C = {c:.0e}") for c in (1e11, 3e11, 9e11)]
    n, losses = runs_of(3e11)
    order = [3, 0, 4, 1, 2]
    cases += [case([n[i] for i in order], [losses[i] for i in order], label="the same runs, unsorted"),
              case(*_synthetic_isoflop(), label="5 sizes around the optimum of the Besiroglu law"),
              case(*_synthetic_isoflop(1e22, "hoffmann", (1.5, 20.0), 4), label="the bottom below the sizes tried"),
              case([1e6, 1e7, 1e8], [3.0, 2.5, 2.8], label="exactly three sizes"),
              case(np.array([2e4, 4e4, 8e4, 1.6e5]), np.array([4.7, 4.5, 4.45, 4.6]), label="numpy arrays")]
    return check_function(_arrays_as_lists(fn), _pair(isoflop_minimum), cases, name="isoflop_optimum", rtol=1e-6, hints=ISOFLOP_HINTS)


# ------------------------------------------------------------------ exercise 6: the given runs' frontier


def _given_frontier():
    budgets = sorted({r[0] for r in GIVEN_RUNS})
    optima = [isoflop_minimum(*runs_of(c))[0] for c in budgets]
    return power_law_fit(budgets, optima)[1], [c / (6 * n) / n for c, n in zip(budgets, optima)]


def check_given_frontier(exponent, tokens_per_param) -> Result:
    """Exercise 6: the exponent a of N_opt ~ C^a through the given runs' three iso-FLOP optima, and the
    tokens per parameter D/N at each optimum (D = C / 6N), smallest budget first."""
    name = "given_frontier"
    if exponent is None or tokens_per_param is None:
        return check_value(None, 0, name=name)
    a, ratios = _given_frontier()
    if isinstance(tokens_per_param, np.ndarray):
        tokens_per_param = tokens_per_param.tolist()
    first = check_value(exponent, a, name=name, rtol=1e-4, hints=[
        (lambda got, exp, c: close(got, 1 - exp, rtol=1e-4), "that is the exponent of D_opt: N_opt's is 1 minus it")])
    if not first.ok:
        return first
    second = check_value(tokens_per_param, ratios, name=name, rtol=1e-4, hints=[
        (lambda got, exp, c: close(list(got)[::-1], exp, rtol=1e-4), "smallest budget first"),
        (lambda got, exp, c: close([1 / g for g in got], exp, rtol=1e-4), "tokens per parameter is D / N")])
    if not second.ok:
        return Result(second.status, "exponent correct; tokens per parameter: " + second.message, second.hint, name)
    return Result("correct", "correct: the frontier exponent and the three tokens-per-parameter ratios", name=name)


# ------------------------------------------------------------------ exercise 7: your own runs


def check_my_optimum(my_runs, my_optimum) -> Result:
    """Exercise 7: the learner's runs (dicts from :func:`utils.scaling.train_for_budget`) at one budget, and
    the bottom of their iso-FLOP curve computed with the learner's function."""
    name = "my_optimum"
    if my_runs is None or my_optimum is None:
        return check_value(None, 0, name=name)
    if not isinstance(my_runs, (list, tuple)) or not all(isinstance(r, dict) and "loss" in r for r in my_runs):
        return Result("invalid", f"my_runs is {describe(my_runs)}; expected a list of train_for_budget results",
                      name=name)
    budgets = {r["compute_flops"] for r in my_runs}
    sizes = {r["n_params_total"] for r in my_runs}
    if len(budgets) != 1 or len(sizes) < 3:
        return Result("wrong", f"my_runs has {len(budgets)} budget(s) and {len(sizes)} distinct size(s); an "
                      "iso-FLOP curve needs one budget and at least 3 sizes", name=name)
    if isinstance(my_optimum, np.ndarray):
        my_optimum = my_optimum.tolist()
    expected = isoflop_minimum([r["n_params_total"] for r in my_runs], [r["loss"] for r in my_runs])
    return check_value(my_optimum, expected, name=name, rtol=1e-6, hints=[
        (lambda got, exp, c: close(tuple(got), _best_measured([r["n_params_total"] for r in my_runs],
                                                              [r["loss"] for r in my_runs])),
         "use your isoflop_optimum (the parabola's bottom), not the best run"),
        (lambda got, exp, c: close(tuple(got), isoflop_minimum([r["n_params"] for r in my_runs],
                                                               [r["loss"] for r in my_runs])),
         "count all parameters (n_params_total), as the given runs do")])


# ------------------------------------------------------------------ exercise 8: plan a budget


def _plan(n_gpus, days, peak_flops, mfu, price_per_gpu_hour, law, available_tokens):
    flops = n_gpus * mfu * peak_flops * days * SECONDS_PER_DAY
    n, d = chinchilla_optimal(flops, fit=law)
    if d > available_tokens:  # not enough data: spend the budget on a bigger model over the data there is
        d = float(available_tokens)
        n = flops / (6 * d)
    return {"flops": flops, "n_params": n, "n_tokens": d, "cost": n_gpus * days * 24 * price_per_gpu_hour,
            "loss": float(chinchilla_loss(n, d, fit=law))}


PLAN_HINTS = [
    (lambda got, exp, c: exp["n_tokens"] < chinchilla_optimal(exp["flops"], fit=c.args[5])[1]
     and close(got["n_params"], chinchilla_optimal(exp["flops"], fit=c.args[5])[0], rtol=1e-2),
     "this case has less data than the optimum wants: train on all the data there is, and spend the rest of "
     "the budget on parameters"),
    (lambda got, exp, c: close(got["flops"], exp["flops"] / c.args[3]), "the GPUs reach only a fraction mfu "
                                                                        "of their peak"),
    (lambda got, exp, c: close(got["cost"], exp["cost"] / c.args[0]), "you pay for every GPU"),
]


def check_plan(fn) -> Result:
    """Exercise 8: ``fn(n_gpus, days, peak_flops, mfu, price_per_gpu_hour, law, available_tokens) -> dict(
    flops=, n_params=, n_tokens=, cost=, loss=)``; the compute-optimal split unless the data runs out."""
    bes, hof = CHINCHILLA_FITS["besiroglu"], CHINCHILLA_FITS["hoffmann"]
    cases = [case(2048, 30, 989e12, 0.4, 3.29, bes, 15e12, label="2,048 H100s for 30 days, plenty of data"),
             case(2048, 30, 989e12, 0.4, 3.29, bes, 2e12, label="the same with 2T tokens of data"),
             case(1024, 34, 312e12, 0.45, 1.79, hof, 300e9, label="GPT-3's cluster with GPT-3's data"),
             case(8, 7, 312e12, 0.35, 1.79, bes, 1e12, label="one A100 node for a week"),
             case(1, 1, 65e12, 0.3, 0.35, bes, 5e9, label="a T4 for a day"),
             case(64, 10, 121e12, 0.5, 0.7, _LAWS["data-hungry"], 1e11, label="a made-up law that wants data")]
    return check_function(fn, _plan, cases, name="plan_budget", rtol=2e-3, hints=PLAN_HINTS, time_limit_s=20)
