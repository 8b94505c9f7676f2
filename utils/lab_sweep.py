"""Checks for lab 04's runs, "Compute-optimal planning" exercises 5-7: the given iso-FLOP sweep (fifteen
measured runs), the bottom of an iso-FLOP curve, the given runs' frontier, and the learner's own runs.

As in :mod:`utils.lab_planning` (exercises 1-4 and 8, which re-exports these names), every check compares with
the course library (:func:`utils.scaling.isoflop_minimum`, :func:`utils.scaling.power_law_fit`) and returns a
:class:`utils.labs.Result`, never the expected value.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from utils.labs import Result, case, check_function, check_value, close, describe
from utils.models import estimate_parameters, model_config
from utils.scaling import (
    chinchilla_loss,
    chinchilla_optimal,
    isoflop_minimum,
    power_law_fit,
)
from utils.validate import check_number

#: Fifteen runs of an earlier version of notebook 06's iso-FLOP sweep (its committed losses differ slightly now),
#: measured on a 2-core CPU (2026-11-26): GPT-2-shaped
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
#: The shapes of the given runs' seven sizes (notebook 06's ladder: heads of 16 dimensions, d_ff = 4 d_model).
GIVEN_SHAPES = tuple(dict(n_layers=layers, d_model=width, n_heads=max(1, width // 16))
                     for layers, width in ((1, 16), (2, 16), (2, 24), (2, 32), (2, 48), (2, 64), (3, 80)))
_VOCAB = 1024


def _counts(shape: dict):
    return estimate_parameters(model_config("decoder", "small", _VOCAB, max_seq_len=SWEEP_SETTINGS["seq_len"],
                                            d_ff=4 * shape["d_model"], **shape))


def embedding_share(n_params_total: int) -> float:
    """The fraction of a given run's (or a ``MY_SHAPES`` model's) parameters in its embedding tables, by its
    total parameter count."""
    for shape in GIVEN_SHAPES + MY_SHAPES:
        counts = _counts(shape)
        if counts.total == n_params_total:
            return counts.embedding / counts.total
    raise ValueError(f"n_params_total={n_params_total!r} is not valid; accepted: the size of a given run or of "
                     f"MY_SHAPES, {sorted({_counts(s).total for s in GIVEN_SHAPES + MY_SHAPES})}")


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

    call.__wrapped__ = fn  # the learner's own function, for telling its stub apart (utils.lab_call.is_stub)
    return call



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
    return optima, power_law_fit(budgets, optima)[1], [c / (6 * n) / n for c, n in zip(budgets, optima)]


def _best_sizes():
    return [_best_measured(*runs_of(c))[0] for c in sorted({r[0] for r in GIVEN_RUNS})]


def check_given_frontier(optima, exponent, tokens_per_param) -> Result:
    """Exercise 6: the given runs' three iso-FLOP optima N (smallest budget first), the exponent a of
    N_opt ~ C^a through them, and the tokens per parameter D/N at each optimum (D = C / 6N)."""
    name = "given_frontier"
    if optima is None or exponent is None or tokens_per_param is None:
        return check_value(None, 0, name=name)
    sizes, a, ratios = _given_frontier()
    optima, tokens_per_param = (v.tolist() if isinstance(v, np.ndarray) else v for v in (optima, tokens_per_param))
    steps = [
        ("optima", check_value(optima, sizes, name=name, rtol=1e-4, hints=[
            (lambda got, exp, c: close(list(got), _best_sizes(), rtol=1e-4),
             "those are the best runs measured; use your isoflop_optimum (the parabolas' bottoms)"),
            (lambda got, exp, c: close(list(got)[::-1], exp, rtol=1e-4), "smallest budget first")])),
        ("exponent", check_value(exponent, a, name=name, rtol=1e-4, hints=[
            (lambda got, exp, c: close(got, 1 - exp, rtol=1e-4), "that is the exponent of D_opt: N_opt's is 1 minus "
                                                                 "it")])),
        ("tokens per parameter", check_value(tokens_per_param, ratios, name=name, rtol=1e-4, hints=[
            (lambda got, exp, c: close(list(got)[::-1], exp, rtol=1e-4), "smallest budget first"),
            (lambda got, exp, c: close([1 / g for g in got], exp, rtol=1e-4), "tokens per parameter is D / N")])),
    ]
    done = []
    for what, result in steps:
        if not result.ok:
            before = f"{' and '.join(done)} correct; " if done else ""
            return Result(result.status, f"{before}{what}: {result.message}", result.hint, name)
        done.append(what)
    return Result("correct", "correct: the three optima, the frontier exponent and the three tokens-per-parameter "
                  "ratios", name=name)


# ------------------------------------------------------------------ exercise 7: your own runs


#: What check_my_optimum reads in each of the learner's runs (all in every train_for_budget result).
RUN_KEYS = ("compute_flops", "shape", *SWEEP_SETTINGS, "count", "n_params", "n_params_total", "loss")


def _full_shape(shape: dict) -> dict:
    return {"d_ff": 4 * shape.get("d_model", 0), **shape}  # as train_for_budget records it


def _runs_problem(my_runs, budget) -> Result | None:
    """Why ``my_runs`` are not three runs of MY_SHAPES at ``budget`` with SWEEP_SETTINGS, or None."""
    name = "my_optimum"
    if not isinstance(my_runs, (list, tuple)) or not all(isinstance(r, dict) for r in my_runs):
        return Result("invalid", f"my_runs is {describe(my_runs)}; expected a list of train_for_budget results",
                      name=name)
    for i, r in enumerate(my_runs):
        missing = [k for k in RUN_KEYS if k not in r]
        if missing:
            return Result("invalid", f"my_runs[{i}] lacks {missing}; expected a train_for_budget result as it "
                          "returned it", name=name)
        odd = [k for k in ("compute_flops", "n_params", "n_params_total", "loss")
               if isinstance(r[k], bool) or not isinstance(r[k], numbers.Real) or not math.isfinite(r[k])]
        if odd or not isinstance(r["shape"], dict):
            return Result("invalid", f"my_runs[{i}]['{(odd or ['shape'])[0]}'] is {describe(r[(odd or ['shape'])[0]])}"
                          "; expected a train_for_budget result as it returned it", name=name)
    wrong_budget = [r["compute_flops"] for r in my_runs if not math.isclose(r["compute_flops"], budget, rel_tol=1e-9)]
    if wrong_budget:
        return Result("wrong", f"a run was trained for {wrong_budget[0]:.3g} FLOPs; the exercise asks for "
                      f"MY_BUDGET = {budget:.3g} for every run", name=name)
    allowed = [_full_shape(s) for s in MY_SHAPES]
    for i, r in enumerate(my_runs):
        if r["shape"] not in allowed:
            return Result("wrong", f"my_runs[{i}] has shape {r['shape']}, not one of MY_SHAPES", name=name)
        changed = [k for k, v in SWEEP_SETTINGS.items() if r[k] != v]
        if changed:
            return Result("wrong", f"my_runs[{i}] was trained with {', '.join(f'{k}={r[k]!r}' for k in changed)}; "
                          "pass **SWEEP_SETTINGS (the given runs' settings) so the losses compare", name=name)
        if r["count"] != "total":
            return Result("wrong", f"my_runs[{i}] spent its budget with count={r['count']!r}; the given runs count "
                          "all parameters (train_for_budget's default)", name=name)
    sizes = {r["n_params_total"] for r in my_runs}
    if len(sizes) < 3:
        return Result("wrong", f"my_runs has {len(sizes)} distinct size(s); an iso-FLOP curve needs the 3 shapes of "
                      "MY_SHAPES", name=name)
    return None


def check_my_optimum(my_runs, my_optimum, budget: float) -> Result:
    """Exercise 7: the learner's runs (dicts from :func:`utils.scaling.train_for_budget`: every shape of
    ``MY_SHAPES``, each trained for ``budget`` FLOPs with ``SWEEP_SETTINGS``), and the bottom of their iso-FLOP
    curve computed with the learner's function."""
    name = "my_optimum"
    budget = check_number("budget", budget, minimum=0, min_open=True)
    if my_runs is None or my_optimum is None:
        return check_value(None, 0, name=name)
    problem = _runs_problem(my_runs, budget)
    if problem is not None:
        return problem
    if isinstance(my_optimum, np.ndarray):
        my_optimum = my_optimum.tolist()
    sizes, losses = [r["n_params_total"] for r in my_runs], [r["loss"] for r in my_runs]
    return check_value(my_optimum, isoflop_minimum(sizes, losses), name=name, rtol=1e-6, hints=[
        (lambda got, exp, c: close(tuple(got), _best_measured(sizes, losses)),
         "use your isoflop_optimum (the parabola's bottom), not the best run"),
        (lambda got, exp, c: close(tuple(got), isoflop_minimum([r["n_params"] for r in my_runs], losses)),
         "count all parameters (n_params_total), as the given runs do")])
