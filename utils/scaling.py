"""Fitting Chinchilla's law to your own runs, and training those runs: the iso-FLOP sweep of notebook 06.

* :func:`fit_scaling_law` -- Hoffmann et al. 2022's recipe (Huber loss on log-loss, L-BFGS from the best
  points of their grid of starts), with bootstrap intervals (:class:`ScalingFit`); scipy is imported only
  when it runs.
* :func:`train_for_budget` -- one run of a sweep: a fresh decoder trained for ``C = 6 N D`` FLOPs (torch is
  imported only when it runs), cached by its inputs.

The published laws and constants (:mod:`utils.scaling_laws`) are re-exported here: ``from utils.scaling
import chinchilla_optimal`` works as before.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.env import require
from utils.io import write_text_atomically
from utils.scaling_laws import (  # noqa: F401 (re-exported)
    BROWN_TABLE_D1,
    CHINCHILLA_FITS,
    KAPLAN_LAWS,
    KAPLAN_N_OPT_EXPONENT,
    LARGE_MODELS,
    TOKENS_PER_PARAMETER,
    ChinchillaLaw,
    chinchilla_loss,
    chinchilla_optimal,
    flops_to_pf_days,
    isoflop_minimum,
    kaplan_loss,
    positive_numbers,
    power_law_fit,
    training_flops,
)
from utils.validate import check_choice, check_fraction, check_int

# ------------------------------------------------------------------------------ fitting L(N, D) to runs

#: Starting points of the fit in (a, b, e, alpha, beta), with A = e^a, B = e^b, E = e^e: Hoffmann et al.'s
#: grid (Appendix D.2), alpha, beta in {0, 0.5, .., 2}, e in {-1, -.5, .., 1}, a, b in {0, 5, .., 25}: 4,500
#: points. Running L-BFGS from all of them costs minutes on a laptop, so :func:`fit_scaling_law` scores
#: every point first (one vectorised pass) and starts L-BFGS from the best ``n_starts``.
FIT_GRID = {"a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
            "e": (-1.0, -0.5, 0.0, 0.5, 1.0), "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
            "beta": (0.0, 0.5, 1.0, 1.5, 2.0)}


@dataclass(frozen=True)
class ScalingFit:
    """What :func:`fit_scaling_law` found: the best law and how much the runs pin it down."""

    law: ChinchillaLaw  # the constants at the lowest Huber loss over all starting points
    ci: dict[str, tuple[float, float]]  # bootstrap interval of E, A, B, alpha, beta, a, b at `confidence`
    objective: float  # summed Huber loss of log-loss residuals at the best fit
    n_runs: int  # how many (N, D, loss) triples it was fitted to
    confidence: float  # the two-sided level of `ci` (e.g. 0.9: the 5th to 95th percentile)
    samples: tuple[ChinchillaLaw, ...] = field(default=(), repr=False)  # one fit per bootstrap resample


def _huber(residual, delta):
    """Huber loss / delta (same minimiser; L-BFGS's tolerances then see numbers near 1) and its slope."""
    size = np.abs(residual)
    loss = np.where(size <= delta, 0.5 * residual**2, delta * (size - 0.5 * delta)) / delta
    return loss, np.clip(residual, -delta, delta) / delta


def _log_prediction(theta, log_n, log_d):
    """``log L_hat = LSE(a - alpha log N, b - beta log D, e)`` (Hoffmann et al.'s form) for one theta
    (shape (5,)) or many (shape (G, 5) -> (G, runs)), and the softmax weights = d log L_hat / d(a, b, e)."""
    a, b, e, alpha, beta = np.moveaxis(np.asarray(theta, float), -1, 0)[..., None]
    terms = np.stack(np.broadcast_arrays(a - alpha * log_n, b - beta * log_d, e))
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    return top + np.log(total), w / total


def _objective(theta, log_n, log_d, log_l, delta):
    """Summed Huber loss of ``log L_hat - log L`` over the runs, and its gradient in (a, b, e, alpha, beta)."""
    log_pred, w = _log_prediction(theta, log_n, log_d)
    loss, slope = _huber(log_pred - log_l, delta)
    dw = slope * w
    grad = np.array([dw[0].sum(), dw[1].sum(), dw[2].sum(), -(dw[0] * log_n).sum(), -(dw[1] * log_d).sum()])
    return float(loss.sum()), grad


def _minimise(starts, log_n, log_d, log_l, delta):
    """L-BFGS from each start; the results sorted best first as (objective, theta)."""
    optimize = require("scipy", "fitting a scaling law (scipy.optimize's L-BFGS)").optimize
    out = []
    for theta0 in starts:
        res = optimize.minimize(_objective, np.asarray(theta0, float), args=(log_n, log_d, log_l, delta),
                                jac=True, method="L-BFGS-B",
                                options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-8})
        if np.all(np.isfinite(res.x)) and np.isfinite(res.fun):
            out.append((float(res.fun), res.x))
    return sorted(out, key=lambda item: item[0])


def _to_law(theta, source: str) -> ChinchillaLaw:
    a, b, e, alpha, beta = (float(v) for v in theta)
    return ChinchillaLaw(math.exp(e), math.exp(a), math.exp(b), alpha, beta, source)


def fit_scaling_law(n_params, n_tokens, losses, *, delta: float = 1e-3, n_starts: int = 20,
                    n_bootstrap: int = 100, confidence: float = 0.9, seed: int = 0) -> ScalingFit:
    """Fit ``L = E + A/N^alpha + B/D^beta`` to runs as Hoffmann et al. 2022 did (Sec. 3.3, App. D.2).

    Minimise the summed Huber loss (``delta``; theirs 1e-3) of ``log L_hat(N_i, D_i) - log L_i`` with
    L-BFGS, started from the ``n_starts`` best points of :data:`FIT_GRID`; keep the lowest. Then refit
    ``n_bootstrap`` resamples of the runs (drawn with replacement, seeded), each started from the best
    fit, for percentile intervals (``ci``) at ``confidence``. One entry per run in ``n_params``,
    ``n_tokens`` and ``losses``, all > 0 (Chinchilla counts all parameters; Kaplan non-embedding ones).
    """
    n = np.atleast_1d(positive_numbers("n_params", n_params))
    d = np.atleast_1d(positive_numbers("n_tokens", n_tokens))
    loss = np.atleast_1d(positive_numbers("losses", losses))
    if not (n.shape == d.shape == loss.shape) or n.ndim != 1 or len(n) < 5:
        raise ValueError(f"need >= 5 runs as three equally long 1-D lists; got shapes {n.shape}, {d.shape}, "
                         f"{loss.shape}")
    positive_numbers("delta", delta)
    confidence = check_fraction("confidence", confidence, low_open=True, high_open=True)
    n_starts = check_int("n_starts", n_starts, minimum=1)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, minimum=0)
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    grid = np.array(list(itertools.product(*(FIT_GRID[k] for k in ("a", "b", "e", "alpha", "beta")))))
    screen = _huber(_log_prediction(grid, log_n, log_d)[0] - log_l, delta)[0].sum(axis=1)
    ranked = _minimise(grid[np.argsort(screen)[:n_starts]], log_n, log_d, log_l, delta)
    if not ranked:
        raise ValueError("the fit diverged from every starting point")
    best_obj, best = ranked[0]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(n), len(n))
        refit = _minimise([best], log_n[idx], log_d[idx], log_l[idx], delta)
        if refit:
            samples.append(_to_law(refit[0][1], "bootstrap resample"))
    ci = {}
    tail = 50 * (1 - confidence)
    for name in ("E", "A", "B", "alpha", "beta", "a", "b") if samples else ():
        if name in ("a", "b"):
            values = [s.frontier_exponents["ab".index(name)] for s in samples if s.alpha + s.beta != 0]
        else:
            values = [getattr(s, name) for s in samples]
        lo, hi = np.percentile(values, [tail, 100 - tail])
        ci[name] = (float(lo), float(hi))
    return ScalingFit(_to_law(best, f"fitted to {len(n)} runs"), ci, best_obj * delta, len(n), confidence,
                      tuple(samples))


# ------------------------------------------------------------------ one run of a sweep (imports torch)


def train_for_budget(compute_flops: float, train_tokens, eval_tokens, shape: dict, *, batch_size: int = 8,
                     seq_len: int = 128, lr: float = 3e-3, eval_batches: int = 32, seed: int = 0,
                     count: str = "total", threads: int | None = 1, cache=None) -> dict:
    """Train a fresh decoder of ``shape`` for the budget ``C = 6 N D`` and return its held-out loss.

    ``shape``: :func:`utils.models.model_config` overrides of the "small" preset (``n_layers``,
    ``d_model``, ``n_heads``, optionally ``d_ff``; ``d_ff`` defaults to 4 x ``d_model``). ``count``: the N of
    the budget, "total" parameters (Hoffmann et al.) or "non_embedding" ones (Kaplan et al.); D = steps x
    ``batch_size`` x ``seq_len`` with steps rounded from ``C / (6 N)``. The learning rate warms up over 5% of the steps and decays by cosine to 10% at the
    last one (Hoffmann et al.: the schedule must fit the run's length). The loss is the mean over the
    same ``eval_batches`` windows of ``eval_tokens`` for every run. ``cache``: a folder; a run whose
    inputs (budget, shape, settings, data, device) were seen before is read from its JSON file there.
    ``threads``: CPU threads during the run (1: models this small gain little from a second thread and,
    on a busy machine, lose many times over waiting for it; None keeps torch's setting).
    """
    import hashlib
    import json
    import time

    import torch

    from utils.env import get_device, seed_everything
    from utils.flops import training_flops_per_token
    from utils.models import build_model, count_parameters, model_config
    from utils.train import TokenBatches, TrainConfig, evaluate, train

    positive_numbers("compute_flops", compute_flops)
    check_choice("count", count, ("total", "non_embedding"))
    shape = {"d_ff": 4 * shape.get("d_model", 0), **shape}
    vocab_size = int(max(train_tokens.max(), eval_tokens.max())) + 1
    config = model_config("decoder", "small", vocab_size, max_seq_len=seq_len, **shape)
    device = get_device()
    settings = dict(compute_flops=float(compute_flops), shape=shape, batch_size=batch_size, seq_len=seq_len,
                    lr=lr, eval_batches=eval_batches, seed=seed, vocab_size=vocab_size, device=device.type,
                    count=count)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for t in (train_tokens, eval_tokens):
        digest.update(t.numpy().tobytes())
    path = None if cache is None else Path(cache) / f"run-{digest.hexdigest()[:20]}.json"
    if path is not None and path.is_file():
        return json.loads(path.read_text())

    seed_everything(seed)
    model = build_model(config)
    counts = count_parameters(model)
    n_budget = counts.total if count == "total" else counts.non_embedding
    steps = max(1, round(compute_flops / (6 * n_budget * batch_size * seq_len)))
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=max(1, steps // 20),
                      eval_every=0, log_every=max(1, steps // 10), seed=seed, device=device.type)
    data = TokenBatches(train_tokens, "clm", batch_size, seq_len, seed=seed)
    held_out = TokenBatches(eval_tokens, "clm", batch_size, seq_len, seed=seed + 1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or before)
        start = time.perf_counter()
        history = train(model, data, cfg, progress=False)
        seconds = time.perf_counter() - start
        loss = evaluate(model, [held_out.batch(i) for i in range(eval_batches)], device)
    finally:
        torch.set_num_threads(before)
    n_tokens = steps * batch_size * seq_len
    result = dict(settings, n_params=counts.non_embedding, n_params_total=counts.total, steps=steps,
                  n_tokens=n_tokens, flops=training_flops(n_budget, n_tokens),
                  flops_per_token=training_flops_per_token(counts.total, config.n_layers, config.d_model,
                                                           seq_len),
                  loss=loss,
                  train_loss=history.loss[-1], seconds=seconds, tokens_per_s=n_tokens / seconds)
    if path is not None:  # atomic: an interrupted run leaves no half-written result
        write_text_atomically(path, json.dumps(result, indent=1))
    return result
