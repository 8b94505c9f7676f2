"""Argument checks shared by every module: one message style, numpy scalars accepted, bools refused.

Each check raises a ``ValueError`` that names the argument, shows the value and says what is accepted::

    lr=inf is not valid; accepted: a finite number > 0

and returns the value as a plain Python ``int`` / ``float`` (so a ``numpy.int64`` from a NumPy computation
works everywhere a Python int does, and stays JSON-serialisable). ``True`` is not a number here: a bool
passed as a count or a rate is always a mistake. No torch import and no import from the course's other
modules: every module, the torch-free arithmetic included, can use these.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_amount", "check_bool", "check_choice", "check_fraction", "check_int", "check_number", "fail"]


def fail(name: str, value, accepted: str):
    """Raise the one error message style: ``name=value is not valid; accepted: ...``."""
    raise ValueError(f"{name}={value!r} is not valid; accepted: {accepted}")


def check_choice(name: str, value, choices) -> None:
    """``value`` must be one of ``choices`` (a tuple, or a dict's keys); unhashable values never are."""
    try:
        valid = value in choices
    except TypeError:  # e.g. a list looked up in a dict
        valid = False
    if not valid:
        fail(name, value, f"one of {tuple(choices)}")


def _range_text(minimum, maximum, min_open: bool, max_open: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {maximum}")
    return " and ".join(parts)


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None,
              allow_none: bool = False) -> int | None:
    """An integer (Python or NumPy, not bool, not float) in ``[minimum, maximum]``; returned as ``int``."""
    if value is None and allow_none:
        return None
    accepted = " ".join(filter(None, ["an int", _range_text(minimum, maximum, False, False)]))
    if allow_none:
        accepted += " or None"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, value, accepted)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        fail(name, value, accepted)
    return value


def check_number(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                 min_open: bool = False, max_open: bool = False, allow_none: bool = False) -> float | None:
    """A finite real number (int, float or NumPy scalar, not bool) within the bounds; returned as ``float``.

    ``min_open`` / ``max_open`` make the bound strict (``> minimum`` instead of ``>= minimum``)."""
    if value is None and allow_none:
        return None
    bounds = _range_text(minimum, maximum, min_open, max_open)
    accepted = " ".join(filter(None, ["a finite number", bounds])) + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, value, accepted)
    try:
        number = float(value)
    except (OverflowError, TypeError, ValueError):  # e.g. an int too large for a float
        fail(name, value, accepted)
    if not math.isfinite(number):
        fail(name, value, accepted)
    too_low = minimum is not None and (number <= minimum if min_open else number < minimum)
    too_high = maximum is not None and (number >= maximum if max_open else number > maximum)
    if too_low or too_high:
        fail(name, value, accepted)
    return number


def check_amount(name: str, value, *, allow_zero: bool = False) -> int | float:
    """A finite count or size > 0 (>= 0 with ``allow_zero``) that keeps its kind: an integer (NumPy's too)
    comes back as a Python ``int`` -- 1 parameter in fp32 is 4 bytes, not 4.0 -- anything else as ``float``."""
    number = check_number(name, value, minimum=0, min_open=not allow_zero)
    return int(value) if isinstance(value, numbers.Integral) else number


def check_fraction(name: str, value, *, low_open: bool = False, high_open: bool = False) -> float:
    """A number in [0, 1] (``low_open``: excluding 0, ``high_open``: excluding 1)."""
    return check_number(name, value, minimum=0, maximum=1, min_open=low_open, max_open=high_open)


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (also NumPy's); strings such as ``"no"`` are refused, not read as truthy."""
    if type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    fail(name, value, "True or False")
