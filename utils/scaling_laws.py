"""Scaling laws as published: compute budgets, Kaplan's and Chinchilla's laws, compute-optimal sizes, and the
two simple fits (a power law, the bottom of an iso-FLOP curve). Fitting Chinchilla's law to your own runs,
and training those runs, is in :mod:`utils.scaling` (which re-exports everything here).

Pure functions on numbers or NumPy arrays (an array in, an array out); no torch, no scipy. Non-positive or
non-finite inputs raise ``ValueError``.

* Training compute ``C ~ 6 N D`` FLOPs (Kaplan et al. 2020, Sec. 2.1; Brown et al. 2020, Appendix D):
  2 FLOPs per parameter per token forward, 4 backward. One petaflop/s-day = 1e15 FLOP/s x 86,400 s.
* Kaplan et al. 2020, "Scaling Laws for Neural Language Models": three power laws (:data:`KAPLAN_LAWS`).
* Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla): the parametric
  loss ``L(N, D) = E + A / N**alpha + B / D**beta`` (their eq. 2), its compute-optimal frontier under
  ``C = 6 N D`` (their eq. 4), and how they fitted it (Huber loss on log-loss, L-BFGS, a grid of starts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from utils.flops import PETAFLOP_S_DAY
from utils.validate import check_choice, check_number

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
        bounds = {"E": dict(minimum=0), "A": dict(minimum=0, min_open=True), "B": dict(minimum=0, min_open=True)}
        for name in ("E", "A", "B", "alpha", "beta"):  # frozen: set through object.__setattr__
            object.__setattr__(self, name, check_number(name, getattr(self, name), **bounds.get(name, {})))

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


def positive_numbers(name: str, value):
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


def as_law(fit) -> ChinchillaLaw:
    """The law ``fit`` names (a key of :data:`CHINCHILLA_FITS`), is, or holds (a fit's ``.law``)."""
    if isinstance(fit, str):
        check_choice("fit", fit, CHINCHILLA_FITS)
        return CHINCHILLA_FITS[fit]
    law = getattr(fit, "law", fit)  # a ScalingFit stands for its best-fit law
    if not isinstance(law, ChinchillaLaw):
        raise ValueError(f"fit={fit!r} is not valid; choose one of {tuple(CHINCHILLA_FITS)} or a ChinchillaLaw")
    return law


def training_flops(n_params, n_tokens):
    """Training compute ``C = 6 N D`` FLOPs of a dense decoder (forward 2ND + backward 4ND)."""
    return 6.0 * positive_numbers("n_params", n_params) * positive_numbers("n_tokens", n_tokens)


def flops_to_pf_days(flops):
    """FLOPs in petaflop/s-days: the work of 1e15 FLOP/s for a day (8.64e19 FLOPs)."""
    return positive_numbers("flops", flops) / PETAFLOP_S_DAY


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
    return (scale / positive_numbers(name, value)) ** exponent


def chinchilla_loss(n_params, n_tokens, *, fit="hoffmann"):
    """``E + A / N**alpha + B / D**beta`` with published constants (``fit``: a name of
    :data:`CHINCHILLA_FITS`) or your own (a :class:`ChinchillaLaw` or :class:`ScalingFit`)."""
    law = as_law(fit)
    n, d = positive_numbers("n_params", n_params), positive_numbers("n_tokens", n_tokens)
    return law.E + law.A / n**law.alpha + law.B / d**law.beta


def chinchilla_optimal(compute_flops, *, fit="hoffmann"):
    """``(N_opt, D_opt)`` minimising :func:`chinchilla_loss` under ``C = 6 N D`` (Hoffmann et al. eq. 4).

    ``N_opt = G (C/6)^a``, ``D_opt = (C/6)^b / G``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``,
    ``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)``; so ``6 N_opt D_opt = C`` exactly.
    """
    law = as_law(fit)
    c = positive_numbers("compute_flops", compute_flops)
    if law.alpha <= 0 or law.beta <= 0:
        raise ValueError(f"alpha={law.alpha}, beta={law.beta}: a compute-optimal size needs both > 0")
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / (law.alpha + law.beta))
    a, b = law.frontier_exponents
    return g * (c / 6.0) ** a, (c / 6.0) ** b / g


def power_law_fit(x, y) -> tuple[float, float]:
    """``(k, p)`` of the least-squares line through ``(log x, log y)``: ``y ~ k * x**p``."""
    x, y = np.atleast_1d(positive_numbers("x", x)), np.atleast_1d(positive_numbers("y", y))
    if x.shape != y.shape or len(x) < 2 or np.ptp(np.log(x)) == 0:
        raise ValueError(f"x and y must be two equally long sets of >= 2 points with distinct x; got {x}, {y}")
    p, log_k = np.polyfit(np.log(x), np.log(y), 1)
    return float(math.exp(log_k)), float(p)


def isoflop_minimum(n_params, losses) -> tuple[float, float]:
    """``(N, loss)`` at the bottom of a parabola fitted to ``loss`` against ``log N`` (Hoffmann et al.
    2022, approach 2: one compute budget, several model sizes). ValueError if it opens downward."""
    n, loss = np.atleast_1d(positive_numbers("n_params", n_params)), np.atleast_1d(positive_numbers("losses", losses))
    if n.shape != loss.shape or len(np.unique(n)) < 3:
        raise ValueError(f"need >= 3 distinct model sizes with one loss each; got n_params={n}, losses={loss}")
    c2, c1, c0 = np.polyfit(np.log(n), loss, 2)
    if c2 <= 0:
        raise ValueError(f"the losses {loss} do not curve upward around a best size (curvature {c2:.3g} <= 0)")
    x = -c1 / (2 * c2)
    return float(math.exp(x)), float(c0 + c1 * x + c2 * x * x)
