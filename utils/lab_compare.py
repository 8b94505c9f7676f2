"""Cases and comparison for the lab checks: what a learner's function is called with (:class:`Case`), how an
argument or output is described in a message (:func:`describe`), and whether an output matches the reference.

Part of the labs' checking core (see :mod:`utils.labs`, which re-exports the public names). The comparison
says *why* an output differs without showing the expected value; ``Uncomparable`` marks output that cannot be
compared at all (wrong type, NaN), which a check reports as "invalid" rather than "wrong".
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    """One call: ``fn(*args, **kwargs)``, with a label the learner reads when it fails ("all zeros")."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""


def case(*args, label: str = "", **kwargs) -> Case:
    """A labelled case: ``case(torch.zeros(8), label="all zeros")``."""
    return Case(args, kwargs, label)


def as_case(c) -> Case:
    """A :class:`Case` from a case, a dict (keyword arguments), a tuple (positional ones) or one bare argument."""
    if isinstance(c, Case):
        return c
    if isinstance(c, dict):
        return Case((), dict(c))
    if isinstance(c, tuple):
        return Case(c)
    return Case((c,))


def describe(value) -> str:
    """A short description of an argument or output: a tensor's shape and dtype, a number, a type."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a course dependency
        torch = None
    if torch is not None and isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, (bool, numbers.Number, str)) or value is None:
        text = repr(value)
        return text if len(text) <= 30 else text[:27] + "..."
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return type(value).__name__


def case_text(c: Case, i: int, n: int) -> str:
    """Where a verdict happened, as the learner reads it: ``case 2 of 5 (all zeros)``."""
    what = c.label or ", ".join([describe(a) for a in c.args] + [f"{k}={describe(v)}" for k, v in c.kwargs.items()])
    return f"case {i + 1} of {n} ({what})"


class Uncomparable(Exception):
    """An output that cannot be compared (wrong type, NaN): the message says what was returned."""


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and type(x).__name__ in ("Tensor", "Parameter")


def _number(x, where: str) -> float:
    """A finite float from a Python/NumPy number or a one-element tensor; ``Uncomparable`` otherwise."""
    if _is_tensor(x):
        if x.numel() != 1:
            raise Uncomparable(f"{where} is a tensor of shape {tuple(x.shape)}, not a single number")
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise Uncomparable(f"{where} is a {type(x).__name__} ({describe(x)}), not a number")
    try:
        value = float(x)
    except (OverflowError, TypeError, ValueError):
        raise Uncomparable(f"{where} is a number too large to compare (beyond float range)") from None
    if math.isnan(value):
        raise Uncomparable(f"{where} is NaN")
    if math.isinf(value):
        raise Uncomparable(f"{where} is infinite")
    return value


def mismatch(got, expected, rtol: float, atol: float, where: str) -> str | None:
    """None when ``got`` matches ``expected`` within ``rtol`` / ``atol``; else why not, naming ``where`` and never
    the expected value. Raises :class:`Uncomparable` for output that cannot be compared."""
    if _is_tensor(expected):
        import torch

        if not _is_tensor(got) and expected.numel() == 1 and isinstance(got, numbers.Real):
            got = torch.tensor(got)  # a plain number where the reference returns a one-value tensor
        if not _is_tensor(got):
            raise Uncomparable(f"{where} is a {type(got).__name__}, not a torch.Tensor")
        # float references accept integer-valued tensors (a zero point as int64); integer codes need their dtype
        if (not expected.is_floating_point() and got.dtype != expected.dtype) or (
            expected.is_floating_point() and got.dtype == torch.bool
        ):
            raise Uncomparable(f"{where} holds {str(got.dtype).removeprefix('torch.')} values; the exercise asks "
                           f"for {str(expected.dtype).removeprefix('torch.')}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            raise Uncomparable(f"{where} holds {bad} NaN or infinite value(s)")
        if expected.numel() == 1 and got.numel() == 1:
            got = got.reshape(expected.shape)  # a scale of shape () or (1,): the same number
        if tuple(got.shape) != tuple(expected.shape):
            return f"{where} has shape {tuple(got.shape)}, which is not the shape the exercise asks for"
        g, e = got.detach().cpu().double(), expected.detach().cpu().double()
        off = (g - e).abs() > atol + rtol * e.abs()
        if bool(off.any()):
            return (f"{where}: {int(off.sum()):,} of {e.numel():,} values differ from the reference "
                    f"(largest difference {float((g - e).abs().max()):.3g})")
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            raise Uncomparable(f"{where} is a {type(got).__name__}, not a dict with keys {sorted(expected)}")
        if set(got) != set(expected):
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected), key=str)
            raise Uncomparable(f"{where} has keys {sorted(got, key=str)}: missing {missing}, unexpected {extra}")
        for k in expected:
            why = mismatch(got[k], expected[k], rtol, atol, f"{where}[{k!r}]")
            if why:
                return why
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            raise Uncomparable(f"{where} is a {type(got).__name__}, not a tuple of {len(expected)} values")
        if len(got) != len(expected):
            raise Uncomparable(f"{where} holds {len(got)} values, not {len(expected)}")
        for k, (g, e) in enumerate(zip(got, expected)):
            why = mismatch(g, e, rtol, atol, f"{where}[{k}]")
            if why:
                return why
        return None
    if isinstance(expected, str):
        if not isinstance(got, str):
            raise Uncomparable(f"{where} is a {type(got).__name__}, not a string")
        return None if got.strip().casefold() == expected.casefold() else f"{where} is {got!r}, not the expected choice"
    e, g = _number(expected, "the reference"), _number(got, where)
    if abs(g - e) > atol + rtol * abs(e):
        shown = f"{int(g):,}" if g.is_integer() and abs(g) < 1e15 else f"{g:.6g}"
        return f"{where} is {shown}, which is not the reference value (rtol={rtol:g})"
    return None


def close(got, expected, *, rtol: float = 1e-6, atol: float = 0.0) -> bool:
    """True when ``got`` matches ``expected`` (numbers, tensors, tuples/dicts of them): for hint predicates."""
    try:
        return mismatch(got, expected, rtol, atol, "output") is None
    except Uncomparable:
        return False
