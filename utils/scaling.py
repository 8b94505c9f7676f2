"""Scaling laws: compute budgets, Kaplan's and Chinchilla's laws, compute-optimal sizes, and fitting a law.

Pure functions on numbers or NumPy arrays (an array in, an array out); torch is never imported at module
level, and scipy only inside :func:`fit_scaling_law`. Non-positive or non-finite inputs raise ``ValueError``.

* Training compute ``C ~ 6 N D`` FLOPs (Kaplan et al. 2020, Sec. 2.1; Brown et al. 2020, Appendix D):
  2 FLOPs per parameter per token forward, 4 backward. One petaflop/s-day = 1e15 FLOP/s x 86,400 s.
* Kaplan et al. 2020, "Scaling Laws for Neural Language Models": three power laws (:data:`KAPLAN_LAWS`).
* Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla): the parametric
  loss ``L(N, D) = E + A / N**alpha + B / D**beta`` (their eq. 2), its compute-optimal frontier under
  ``C = 6 N D`` (their eq. 4), and how they fitted it (Huber loss on log-loss, L-BFGS, a grid of starts).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.env import check_choice, require
from utils.flops import PETAFLOP_S_DAY

#: Kaplan et al. 2020, Sec. 1.2, eqs. (1.1)-(1.3): ``L(X) = (X_c / X) ** alpha_X`` in nats per token
#: (WebText2, GPT-2's 50,257-token vocabulary). keyword -> (X_c, alpha_X):
#: N = non-embedding parameters (trained to convergence, early-stopped); D = tokens (a large model,
#: early-stopped); C_min = compute in PF-days spent compute-efficiently.
KAPLAN_LAWS: dict[str, tuple[float, float]] = {
    "n_params": (8.8e13, 0.076),
    "n_tokens": (5.4e13, 0.095),
    "compute_pf_days": (3.1e8, 0.050),
}
#: Kaplan et al. 2020, Sec. 1.2 / Sec. 6.1: compute-optimal model size grows as N_opt ~ C^0.73.
KAPLAN_N_OPT_EXPONENT = 0.73
#: Hoffmann et al. 2022: about 20 training tokens per parameter is compute-optimal (approaches 1 and 2,
#: Table 3: e.g. 70B parameters -> 1.4T tokens).
TOKENS_PER_PARAMETER = 20.0


@dataclass(frozen=True)
class ChinchillaLaw:
    """``L(N, D) = E + A / N**alpha + B / D**beta`` (Hoffmann et al. 2022, eq. 2), loss in nats per token."""

    E: float  # irreducible loss: what an infinite model on infinite data still pays (the text's entropy)
    A: float  # size of the model-size term (finite N)
    B: float  # size of the data term (finite D)
    alpha: float  # how fast the model-size term shrinks with N
    beta: float  # how fast the data term shrinks with D
    source: str = ""  # where the constants come from

    def __post_init__(self):
        for name in ("E", "A", "B", "alpha", "beta"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or not math.isfinite(value):
                raise ValueError(f"{name}={value!r} is not valid; accepted: a finite number")
        if self.E < 0 or self.A <= 0 or self.B <= 0:
            raise ValueError(f"E={self.E}, A={self.A}, B={self.B}: accepted E >= 0, A > 0, B > 0")

    @property
    def frontier_exponents(self) -> tuple[float, float]:
        """(a, b) with N_opt ~ C^a and D_opt ~ C^b: a = beta / (alpha + beta), b = alpha / (alpha + beta)."""
        total = self.alpha + self.beta
        return self.beta / total, self.alpha / total


#: Published constants. "hoffmann": approach 3 (Hoffmann et al. 2022, Sec. 3.3, fit details in Appendix
#: D.2). "besiroglu": Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", their re-fit of
#: the same runs (data recovered from Hoffmann's Figure 4), which agrees with approaches 1 and 2.
CHINCHILLA_FITS: dict[str, ChinchillaLaw] = {
    "hoffmann": ChinchillaLaw(1.69, 406.4, 410.7, 0.34, 0.28, "Hoffmann et al. 2022, approach 3"),
    "besiroglu": ChinchillaLaw(1.82, 482.0, 2085.4, 0.348, 0.366, "Besiroglu et al. 2024"),
}

#: Brown et al. 2020 ("GPT-3"), Table D.1: model -> (parameters, training tokens). Encoder-decoder T5
#: sends each token through about half its parameters: Brown et al. count it at 3ND, not 6ND.
BROWN_TABLE_D1: dict[str, dict[str, tuple[float, float]]] = {
    "BERT": {"BERT-Base": (109e6, 250e9), "BERT-Large": (355e6, 250e9)},
    "RoBERTa": {"RoBERTa-Base": (125e6, 2000e9), "RoBERTa-Large": (355e6, 2000e9)},
    "T5": {"T5-Small": (60e6, 1000e9), "T5-Base": (220e6, 1000e9), "T5-Large": (770e6, 1000e9),
           "T5-3B": (3e9, 1000e9), "T5-11B": (11e9, 1000e9)},
    "GPT-3": {"GPT-3 Small": (125e6, 300e9), "GPT-3 Medium": (356e6, 300e9), "GPT-3 Large": (760e6, 300e9),
              "GPT-3 XL": (1.32e9, 300e9), "GPT-3 2.7B": (2.65e9, 300e9), "GPT-3 6.7B": (6.66e9, 300e9),
              "GPT-3 13B": (12.85e9, 300e9), "GPT-3 175B": (174.6e9, 300e9)},
}

#: The lecture's table of large models: name -> (parameters, training tokens actually used). Hoffmann et
#: al. 2022 (Chinchilla, Gopher), Touvron et al. 2023 (LLaMA-65B), Brown et al. 2020 (GPT-3), Zhang et al.
#: 2022 (OPT-175B), BigScience 2022 (BLOOM, rounded to the lecture's 350B; the paper reports 366B).
LARGE_MODELS: dict[str, tuple[float, float]] = {
    "Chinchilla": (70e9, 1.4e12),
    "LLaMA-65B": (65e9, 1.4e12),
    "GPT-3": (175e9, 300e9),
    "OPT-175B": (175e9, 180e9),
    "BLOOM": (176e9, 350e9),
}


def _positive(name: str, value):
    """``value`` as a float (scalar in) or float array, after checking every entry is positive and finite."""
    try:
        arr = np.asarray(value)
        if arr.dtype == bool or arr.dtype.kind not in "iuf":
            raise TypeError
        arr = arr.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not valid; accepted: positive finite numbers") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{name}={value!r} is not valid; accepted: positive finite numbers")
    return float(arr) if arr.ndim == 0 else arr


def _law(fit) -> ChinchillaLaw:
    if isinstance(fit, str):
        check_choice("fit", fit, CHINCHILLA_FITS)
        return CHINCHILLA_FITS[fit]
    law = getattr(fit, "law", fit)  # a ScalingFit stands for its best-fit law
    if not isinstance(law, ChinchillaLaw):
        raise ValueError(f"fit={fit!r} is not valid; choose one of {tuple(CHINCHILLA_FITS)} or a ChinchillaLaw")
    return law


def training_flops(n_params, n_tokens):
    """Training compute ``C = 6 N D`` FLOPs of a dense decoder (forward 2ND + backward 4ND)."""
    return 6.0 * _positive("n_params", n_params) * _positive("n_tokens", n_tokens)


def flops_to_pf_days(flops):
    """FLOPs in petaflop/s-days: the work of 1e15 FLOP/s for a day (8.64e19 FLOPs)."""
    return _positive("flops", flops) / PETAFLOP_S_DAY


def kaplan_loss(*, n_params=None, n_tokens=None, compute_pf_days=None):
    """One of Kaplan et al.'s three laws ``L = (X_c / X) ** alpha_X``: pass exactly one keyword.

    ``n_params``: non-embedding parameters, data not limiting; ``n_tokens``: tokens, model not limiting;
    ``compute_pf_days``: compute in PF-days, allocated optimally. Nats per token on WebText2 (their
    tokenizer and data: compare trends, not absolute values, with other corpora).
    """
    given = {k: v for k, v in (("n_params", n_params), ("n_tokens", n_tokens),
                               ("compute_pf_days", compute_pf_days)) if v is not None}
    if len(given) != 1:
        raise ValueError(
            f"kaplan_loss takes exactly one of n_params, n_tokens, compute_pf_days; got {sorted(given) or 'none'}"
        )
    (name, value), = given.items()
    scale, exponent = KAPLAN_LAWS[name]
    return (scale / _positive(name, value)) ** exponent


def chinchilla_loss(n_params, n_tokens, *, fit="hoffmann"):
    """``E + A / N**alpha + B / D**beta`` with published constants (``fit``: a name of
    :data:`CHINCHILLA_FITS`) or your own (a :class:`ChinchillaLaw` or :class:`ScalingFit`)."""
    law = _law(fit)
    n, d = _positive("n_params", n_params), _positive("n_tokens", n_tokens)
    return law.E + law.A / n**law.alpha + law.B / d**law.beta


def chinchilla_optimal(compute_flops, *, fit="hoffmann"):
    """``(N_opt, D_opt)`` minimising :func:`chinchilla_loss` under ``C = 6 N D`` (Hoffmann et al. eq. 4).

    ``N_opt = G (C/6)^a``, ``D_opt = (C/6)^b / G``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``,
    ``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)``; so ``6 N_opt D_opt = C`` exactly.
    """
    law = _law(fit)
    c = _positive("compute_flops", compute_flops)
    if law.alpha <= 0 or law.beta <= 0:
        raise ValueError(f"alpha={law.alpha}, beta={law.beta}: a compute-optimal size needs both > 0")
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / (law.alpha + law.beta))
    a, b = law.frontier_exponents
    return g * (c / 6.0) ** a, (c / 6.0) ** b / g


def power_law_fit(x, y) -> tuple[float, float]:
    """``(k, p)`` of the least-squares line through ``(log x, log y)``: ``y ~ k * x**p``."""
    x, y = np.atleast_1d(_positive("x", x)), np.atleast_1d(_positive("y", y))
    if x.shape != y.shape or len(x) < 2 or np.ptp(np.log(x)) == 0:
        raise ValueError(f"x and y must be two equally long sets of >= 2 points with distinct x; got {x}, {y}")
    p, log_k = np.polyfit(np.log(x), np.log(y), 1)
    return float(math.exp(log_k)), float(p)


def isoflop_minimum(n_params, losses) -> tuple[float, float]:
    """``(N, loss)`` at the bottom of a parabola fitted to ``loss`` against ``log N`` (Hoffmann et al.
    2022, approach 2: one compute budget, several model sizes). ValueError if it opens downward."""
    n, loss = np.atleast_1d(_positive("n_params", n_params)), np.atleast_1d(_positive("losses", losses))
    if n.shape != loss.shape or len(np.unique(n)) < 3:
        raise ValueError(f"need >= 3 distinct model sizes with one loss each; got n_params={n}, losses={loss}")
    c2, c1, c0 = np.polyfit(np.log(n), loss, 2)
    if c2 <= 0:
        raise ValueError(f"the losses {loss} do not curve upward around a best size (curvature {c2:.3g} <= 0)")
    x = -c1 / (2 * c2)
    return float(math.exp(x)), float(c0 + c1 * x + c2 * x * x)


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
    n = np.atleast_1d(_positive("n_params", n_params))
    d = np.atleast_1d(_positive("n_tokens", n_tokens))
    loss = np.atleast_1d(_positive("losses", losses))
    if not (n.shape == d.shape == loss.shape) or n.ndim != 1 or len(n) < 5:
        raise ValueError(f"need >= 5 runs as three equally long 1-D lists; got shapes {n.shape}, {d.shape}, "
                         f"{loss.shape}")
    _positive("delta", delta)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is not valid; accepted: a number in (0, 1)")
    for name, value, low in (("n_starts", n_starts, 1), ("n_bootstrap", n_bootstrap, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}={value!r} is not valid; accepted: an int >= {low}")
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

    _positive("compute_flops", compute_flops)
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
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(path)  # atomic: an interrupted run leaves no half-written result
    return result
