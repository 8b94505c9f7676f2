"""Checks for lab 03, exercise 4 (choose a sharding factor), and the verdicts the other exercises share.

A choice is checked against the constraints the exercise states -- the factor divides the world size, a
rank's model states (plus its activations) fit the limit, and no smaller factor fits -- never against one
number, so the reference stays private (see :mod:`utils.lab_shard` for the other exercises).
"""

from __future__ import annotations

import numbers

from utils.labs import Result, call_verdict, describe

#: Mixed-precision Adam in ZeRO's accounting: bytes per parameter of weights, gradients, optimizer states.
MIXED_ADAM = dict(weight_bytes=2, gradient_bytes=2, optimizer_bytes=12)


# ------------------------------------------------------------------ exercise 4: choose a sharding factor


def _state_bytes(n_params, f, *, activation_bytes, weight_bytes, gradient_bytes, optimizer_bytes) -> float:
    return (weight_bytes + gradient_bytes + optimizer_bytes) * n_params / f + activation_bytes


def _fits(per_rank: float, limit: float) -> bool:
    return per_rank <= limit * (1 + 1e-12)  # a rank exactly at the limit fits (float round-off aside)


def _smallest_factor(n_params, world_size, memory_limit, *, activation_bytes=0.0, weight_bytes=2,
                     gradient_bytes=2, optimizer_bytes=12):
    for f in (d for d in range(1, world_size + 1) if world_size % d == 0):
        per = _state_bytes(n_params, f, activation_bytes=activation_bytes, weight_bytes=weight_bytes,
                           gradient_bytes=gradient_bytes, optimizer_bytes=optimizer_bytes)
        if _fits(per, memory_limit):
            return f
    return None


GiB = 2**30
#: Exercise 4's cases: (n_params, world_size, memory_limit, keyword arguments, label).
FACTOR_CASES = [
    (1e9, 8, 80 * GiB, {}, "1B on 8 GPUs of 80 GiB"),
    (7.5e9, 64, 80 * GiB, {}, "ZeRO's 7.5B on 64 GPUs of 80 GiB"),
    (30e9, 64, 76 * GiB, dict(activation_bytes=12 * GiB), "30B on 64 GPUs, 12 GiB of activations"),
    (70e9, 64, 76 * GiB, dict(activation_bytes=12 * GiB), "70B on 64 GPUs, 12 GiB of activations"),
    (175e9, 64, 76 * GiB, dict(activation_bytes=12 * GiB), "175B on 64 GPUs: does anything fit?"),
    (10**9, 8, 8 * 10**9, {}, "16 GB of states, 8 GB limit: a rank exactly at the limit"),
    (13e9, 6, 40 * GiB, {}, "13B on 6 GPUs of 40 GiB (factors 1, 2, 3, 6)"),
    (13e9, 7, 40 * GiB, {}, "13B on 7 GPUs (a prime world size)"),
    (1e9, 1, 80 * GiB, {}, "one GPU"),
    (3e9, 1, 24 * GiB, {}, "one 24 GiB GPU, 3B: too big"),
    (134_912, 4, 1_200_000, dict(weight_bytes=4, gradient_bytes=4, optimizer_bytes=8), "the lab's model, fp32"),
    (1e9, 16, 10 * GiB, dict(activation_bytes=20 * GiB), "activations alone exceed the limit"),
    (2e9, 16, 16 * GiB, dict(weight_bytes=2, gradient_bytes=2, optimizer_bytes=4), "8-bit Adam states"),
]


def _check_factor(name, got, world_size, n_params, limit, kw, ref, where) -> Result | None:
    sizes = dict(dict(activation_bytes=0.0, **MIXED_ADAM), **kw)
    if got is not None and (isinstance(got, bool) or not isinstance(got, numbers.Integral)):
        return Result("invalid", f"{where}: returned {describe(got)} (a {type(got).__name__}); return an int "
                      "(ranks per sharding group) or None", name=name)
    if got is None:
        if ref is not None:
            return Result("wrong", f"{where}: returned None, but some sharding factor fits", name=name,
                          hint="try every factor the world size allows, up to full sharding")
        return None
    got = int(got)
    if got < 1 or world_size % got:
        return Result("wrong", f"{where}: f={got} does not divide world_size={world_size}: the ranks cannot form "
                      "equal groups", name=name, hint="only divisors of the world size are sharding factors")
    per = _state_bytes(n_params, got, **sizes)
    if not _fits(per, limit):
        bare = _fits(per - sizes["activation_bytes"], limit)
        return Result("wrong", f"{where}: with f={got} a rank needs {per:,.4g} bytes, more than the limit", name=name,
                      hint="leave room for the activations" if bare and sizes["activation_bytes"] else
                      "return None when not even full sharding fits" if ref is None else None)
    if got != ref:
        exact = ref is not None and _state_bytes(n_params, ref, **sizes) == limit
        return Result("wrong", f"{where}: f={got} fits, but a smaller factor also fits (less traffic per rank, "
                      "smaller groups)", name=name,
                      hint="a rank needing exactly the limit still fits" if exact else
                      "choose the smallest factor that fits")
    return None


def check_shard_factor(fn) -> Result:
    """Exercise 4: ``fn(n_params, world_size, memory_limit, *, activation_bytes=0.0, weight_bytes=2,
    gradient_bytes=2, optimizer_bytes=12) -> int | None``: the smallest factor that fits, None if none does."""
    name = "choose_shard_factor"
    for i, (n, world, limit, kw, label) in enumerate(FACTOR_CASES):
        where = f"case {i + 1} of {len(FACTOR_CASES)} ({label})"
        failed, out = call_verdict(fn, (n, world, limit), kw, name=name, where=where,
                                   timeout_hint="look for a loop that never ends")
        if failed is not None:
            return failed
        verdict = _check_factor(name, out, world, n, limit, kw, _smallest_factor(n, world, limit, **kw), where)
        if verdict is not None:
            return verdict
    return Result("correct", f"correct: all {len(FACTOR_CASES)} choices fit and are the smallest that do", name=name)
