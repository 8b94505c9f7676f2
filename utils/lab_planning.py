"""Checks for lab 04, "Compute-optimal planning": from a FLOP budget to parameters, tokens, days and cost;
fit power laws and iso-FLOP minima to runs; plan a budget under a data limit.

Every check calls the learner's function on many inputs and compares with the course library
(:mod:`utils.scaling`, :func:`utils.flops.budget_cost`); the reference computations are private, and a check
returns a :class:`utils.labs.Result`, never the expected value. Exercises 5-7 (the given runs, iso-FLOP
curves, the learner's own runs) live in :mod:`utils.lab_sweep`; their names are importable from here too.
"""

from __future__ import annotations

import math

import numpy as np

from utils.flops import SECONDS_PER_DAY, budget_cost
from utils.lab_sweep import (  # noqa: F401  (exercises 5-7 and the given runs: the lab imports them from here)
    GIVEN_RUNS,
    GIVEN_SHAPES,
    MY_SHAPES,
    RUN_KEYS,
    SWEEP_SETTINGS,
    _arrays_as_lists,
    _pair,
    check_given_frontier,
    check_isoflop_optimum,
    check_my_optimum,
    embedding_share,
    runs_of,
)
from utils.labs import Result, case, check_function, close
from utils.scaling import (
    CHINCHILLA_FITS,
    ChinchillaLaw,
    chinchilla_loss,
    chinchilla_optimal,
    power_law_fit,
)

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
         # alpha > beta: the optimum's tokens per parameter grow with the budget, from about 1,800 at 1e18 FLOPs
         "data-hungry": ChinchillaLaw(2.0, 400.0, 1500.0, 0.34, 0.28, "made up: wants data")}


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


def plan_cases() -> list:
    """Exercise 8's six scenarios; three are data-limited (the 2T-token plan, GPT-3's data, the made-up law)."""
    bes, hof = CHINCHILLA_FITS["besiroglu"], CHINCHILLA_FITS["hoffmann"]
    return [case(2048, 30, 989e12, 0.4, 3.29, bes, 15e12, label="2,048 H100s for 30 days, plenty of data"),
            case(2048, 30, 989e12, 0.4, 3.29, bes, 2e12, label="the same with 2T tokens of data"),
            case(1024, 34, 312e12, 0.45, 1.79, hof, 300e9, label="GPT-3's cluster with GPT-3's data"),
            case(8, 7, 312e12, 0.35, 1.79, bes, 1e12, label="one A100 node for a week"),
            case(1, 1, 65e12, 0.3, 0.35, bes, 5e9, label="a T4 for a day"),
            case(64, 10, 121e12, 0.5, 0.7, _LAWS["data-hungry"], 1e11, label="a made-up law that wants data")]


def check_plan(fn) -> Result:
    """Exercise 8: ``fn(n_gpus, days, peak_flops, mfu, price_per_gpu_hour, law, available_tokens) -> dict(
    flops=, n_params=, n_tokens=, cost=, loss=)``; the compute-optimal split unless the data runs out."""
    return check_function(fn, _plan, plan_cases(), name="plan_budget", rtol=2e-3, hints=PLAN_HINTS, time_limit_s=20)
