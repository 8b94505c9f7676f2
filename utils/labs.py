"""Auto-checks for the labs: call a learner's function on many inputs and say what a learner can act on.

A check returns a :class:`Result` whose ``status`` is one of :data:`STATUSES`:

* ``"correct"``      -- every case matches the reference within the stated tolerances;
* ``"wrong"``        -- a well-formed answer that does not match (the first failing case is named, and a
  hint is picked from the exercise's list of common mistakes; hints never contain the expected value);
* ``"invalid"``      -- the answer could not be checked: the function raised (its exception type and
  message are reported, never a traceback from the checker), returned the wrong type or shape of
  container, NaN or infinity, or ran longer than the time limit;
* ``"not done yet"`` -- the nbgrader stub still raises ``NotImplementedError``, or a value is still ``None``.

The expected values come from reference functions in ``utils`` (the library the course teaches), computed
when the check runs; none of this module's public functions returns them. Lab-specific checks live in
``utils/lab_*.py`` and are built from :func:`check_function` and :func:`check_value`.
"""

from __future__ import annotations

import copy
import ctypes
import html
import math
import numbers
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from utils.validate import check_number

#: What a check can say, best first.
STATUSES = ("correct", "wrong", "invalid", "not done yet")
_MARK = {"correct": "[ok]", "wrong": "[wrong]", "invalid": "[invalid]", "not done yet": "[todo]"}
_COLOUR = {"correct": "#1a7f37", "wrong": "#b35900", "invalid": "#cf222e", "not done yet": "#57606a"}

#: A hint: ``(predicate(learner_output, expected, case) -> bool, text)``, tried in order on a wrong answer.
Hint = tuple[Callable[..., bool], str]


@dataclass(frozen=True)
class Result:
    """The verdict of one check. A notebook shows it as one line: ``[wrong] absmax_quantize: ...``."""

    status: str  # one of STATUSES
    message: str  # what the learner reads: what was checked, and for a failure the first failing case
    hint: str | None = None  # a nudge for a wrong or invalid answer; never the expected value
    name: str = ""  # the exercise, e.g. "training_bytes"

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not valid; accepted: one of {STATUSES}")

    @property
    def ok(self) -> bool:
        return self.status == "correct"

    def __bool__(self) -> bool:
        return self.ok

    def line(self) -> str:
        hint = f" Hint: {self.hint}" if self.hint else ""
        name = f"{self.name}: " if self.name else ""
        return f"{_MARK[self.status]} {name}{self.message}{hint}"

    __str__ = line

    def __repr__(self) -> str:  # a cell's text output (also what nbval compares)
        return self.line()

    def _repr_html_(self) -> str:
        colour = _COLOUR[self.status]
        hint = f" <i>Hint:</i> {html.escape(self.hint)}" if self.hint else ""
        name = f"<b>{html.escape(self.name)}</b>: " if self.name else ""
        return (f'<div style="border-left:4px solid {colour};padding:2px 8px">'
                f'<b style="color:{colour}">{html.escape(self.status)}</b> &mdash; {name}'
                f"{html.escape(self.message)}{hint}</div>")


def report(*results: Result) -> None:
    """Print a short table: one row per check (lists of results are flattened), then how many are correct."""
    flat = [r for x in results for r in (x if isinstance(x, (list, tuple)) else [x])]
    for r in flat:
        if not isinstance(r, Result):
            raise TypeError(f"report() takes Result objects from the checks, got {type(r).__name__}")
    width = max([len("exercise")] + [len(r.name) for r in flat])
    lines = [f"{'exercise'.ljust(width)}  {'status'.ljust(12)}  message", f"{'-' * width}  {'-' * 12}  -------"]
    for r in flat:
        msg = r.message if len(r.message) <= 70 else r.message[:67] + "..."
        lines.append(f"{r.name.ljust(width)}  {r.status.ljust(12)}  {msg}")
    lines.append(f"{sum(r.ok for r in flat)} of {len(flat)} correct")
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------------------------
# Cases and comparison
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One call: ``fn(*args, **kwargs)``, with a label the learner reads when it fails ("all zeros")."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""


def case(*args, label: str = "", **kwargs) -> Case:
    """A labelled case: ``case(torch.zeros(8), label="all zeros")``."""
    return Case(args, kwargs, label)


def _as_case(c) -> Case:
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


def _case_text(c: Case, i: int, n: int) -> str:
    what = c.label or ", ".join([describe(a) for a in c.args] + [f"{k}={describe(v)}" for k, v in c.kwargs.items()])
    return f"case {i + 1} of {n} ({what})"


class _Invalid(Exception):
    """An output that cannot be compared (wrong type, NaN): the message says what was returned."""


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and type(x).__name__ in ("Tensor", "Parameter")


def _number(x, where: str) -> float:
    """A finite float from a Python/NumPy number or a one-element tensor; ``_Invalid`` otherwise."""
    if _is_tensor(x):
        if x.numel() != 1:
            raise _Invalid(f"{where} is a tensor of shape {tuple(x.shape)}, not a single number")
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise _Invalid(f"{where} is a {type(x).__name__} ({describe(x)}), not a number")
    try:
        value = float(x)
    except (OverflowError, TypeError, ValueError):
        raise _Invalid(f"{where} is a number too large to compare (beyond float range)") from None
    if math.isnan(value):
        raise _Invalid(f"{where} is NaN")
    if math.isinf(value):
        raise _Invalid(f"{where} is infinite")
    return value


def _compare(got, expected, rtol: float, atol: float, where: str) -> str | None:
    """None when ``got`` matches ``expected``; else why not. Raises ``_Invalid`` for uncomparable output."""
    if _is_tensor(expected):
        import torch

        if not _is_tensor(got) and expected.numel() == 1 and isinstance(got, numbers.Real):
            got = torch.tensor(got)  # a plain number where the reference returns a one-value tensor
        if not _is_tensor(got):
            raise _Invalid(f"{where} is a {type(got).__name__}, not a torch.Tensor")
        # float references accept integer-valued tensors (a zero point as int64); integer codes need their dtype
        if (not expected.is_floating_point() and got.dtype != expected.dtype) or (
            expected.is_floating_point() and got.dtype == torch.bool
        ):
            raise _Invalid(f"{where} holds {str(got.dtype).removeprefix('torch.')} values; the exercise asks "
                           f"for {str(expected.dtype).removeprefix('torch.')}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            raise _Invalid(f"{where} holds {bad} NaN or infinite value(s)")
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
            raise _Invalid(f"{where} is a {type(got).__name__}, not a dict with keys {sorted(expected)}")
        if set(got) != set(expected):
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected), key=str)
            raise _Invalid(f"{where} has keys {sorted(got, key=str)}: missing {missing}, unexpected {extra}")
        for k in expected:
            why = _compare(got[k], expected[k], rtol, atol, f"{where}[{k!r}]")
            if why:
                return why
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            raise _Invalid(f"{where} is a {type(got).__name__}, not a tuple of {len(expected)} values")
        if len(got) != len(expected):
            raise _Invalid(f"{where} holds {len(got)} values, not {len(expected)}")
        for k, (g, e) in enumerate(zip(got, expected)):
            why = _compare(g, e, rtol, atol, f"{where}[{k}]")
            if why:
                return why
        return None
    if isinstance(expected, str):
        if not isinstance(got, str):
            raise _Invalid(f"{where} is a {type(got).__name__}, not a string")
        return None if got.strip().casefold() == expected.casefold() else f"{where} is {got!r}, not the expected choice"
    e, g = _number(expected, "the reference"), _number(got, where)
    if abs(g - e) > atol + rtol * abs(e):
        shown = f"{int(g):,}" if g.is_integer() and abs(g) < 1e15 else f"{g:.6g}"
        return f"{where} is {shown}, which is not the reference value (rtol={rtol:g})"
    return None


def close(got, expected, *, rtol: float = 1e-6, atol: float = 0.0) -> bool:
    """True when ``got`` matches ``expected`` (numbers, tensors, tuples/dicts of them): for hint predicates."""
    try:
        return _compare(got, expected, rtol, atol, "output") is None
    except _Invalid:
        return False


# ---------------------------------------------------------------------------------------------------------
# Running a learner's function
# ---------------------------------------------------------------------------------------------------------


class _TimedOut(BaseException):  # BaseException: a learner's `except Exception` cannot swallow it
    pass


def _stop_thread(thread: threading.Thread) -> None:
    """Best effort: raise _TimedOut inside an abandoned thread (works between Python bytecodes)."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_TimedOut))


def call_with_time_limit(fn: Callable, args: tuple, kwargs: dict, time_limit_s: float):
    """``("ok", output)``, ``("raised", exception)`` or ``("timeout", None)``; the call runs in a thread that is
    abandoned (and interrupted where Python can) when it runs longer than ``time_limit_s`` seconds."""
    box: dict = {}

    def target():
        try:
            box["out"] = fn(*args, **kwargs)
        except _TimedOut:
            pass
        except BaseException as e:  # noqa: BLE001 - a learner's exception (even SystemExit) is reported
            box["err"] = e

    thread = threading.Thread(target=target, daemon=True, name="lab-check")
    thread.start()
    thread.join(time_limit_s)
    if thread.is_alive():
        _stop_thread(thread)
        return "timeout", None
    if "err" in box:
        return "raised", box["err"]
    return "ok", box.get("out")


def _exc_text(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _pick_hint(hints: Sequence[Hint] | None, got, expected, c: Case) -> str | None:
    for predicate, text in hints or ():
        try:
            if predicate(got, expected, c):
                return text
        except Exception:  # noqa: BLE001 - a hint's predicate failing on odd output just does not apply
            continue
    return None


def _check_common(name, rtol, atol) -> tuple[float, float]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not valid; accepted: a non-empty string naming the exercise")
    return check_number("rtol", rtol, minimum=0), check_number("atol", atol, minimum=0)


def check_function(learner_fn, reference_fn: Callable, cases, *, name: str, rtol: float = 1e-6,
                   atol: float = 0.0, time_limit_s: float = 10.0, hints: Sequence[Hint] | None = None) -> Result:
    """Call ``learner_fn`` on every case and compare with ``reference_fn`` within ``rtol`` / ``atol``.

    ``cases``: a list of :class:`Case` (see :func:`case`), tuples of positional arguments, or dicts of
    keyword arguments. The reference runs first and its output is deep-copied, so a learner's function that
    changes its inputs in place cannot change the expected value. The first failing case stops the check.
    """
    rtol, atol = _check_common(name, rtol, atol)
    time_limit_s = check_number("time_limit_s", time_limit_s, minimum=0, min_open=True)
    cases = [_as_case(c) for c in cases]
    if not cases:
        raise ValueError("cases must hold at least one case, got none")
    if not callable(learner_fn):
        return Result("invalid", f"expected a function, got {describe(learner_fn)} (a {type(learner_fn).__name__})",
                      name=name)
    n = len(cases)
    for i, c in enumerate(cases):
        expected = reference_fn(*c.args, **c.kwargs)  # first, and copied: the learner may change inputs in place
        try:
            expected = copy.deepcopy(expected)
        except Exception:  # noqa: BLE001 - an output that cannot be copied is kept as is
            pass
        where = _case_text(c, i, n)
        kind, out = call_with_time_limit(learner_fn, c.args, c.kwargs, time_limit_s)
        if kind == "timeout":
            return Result("invalid", f"{where}: took longer than {time_limit_s:g} s and was stopped",
                          hint="look for a loop that never ends, or a loop in Python over every value of a "
                               "large tensor (use tensor operations instead)", name=name)
        if kind == "raised":
            if isinstance(out, NotImplementedError):
                return Result("not done yet", "not done yet -- replace `raise NotImplementedError()` with your "
                              "code and run the cell again", name=name)
            return Result("invalid", f"{where}: your function raised {_exc_text(out)}", name=name)
        try:
            why = _compare(out, expected, rtol, atol, "output")
        except _Invalid as e:
            return Result("invalid", f"{where}: {e}", hint=_pick_hint(hints, out, expected, c), name=name)
        if why:
            return Result("wrong", f"{where}: {why}", hint=_pick_hint(hints, out, expected, c), name=name)
    tol = f"rtol={rtol:g}" + (f", atol={atol:g}" if atol else "")
    return Result("correct", f"correct: all {n} cases match the reference ({tol})", name=name)


def check_value(answer, expected, *, name: str, rtol: float = 1e-6, atol: float = 0.0,
                hints: Sequence[Hint] | None = None) -> Result:
    """Compare a value (number, string choice, tensor, tuple/dict of them) with ``expected``.

    ``None`` or ``...`` -> "not done yet". The message never shows ``expected``; a wrong answer gets the
    first hint whose ``predicate(answer, expected, None)`` holds.
    """
    rtol, atol = _check_common(name, rtol, atol)
    if answer is None or answer is Ellipsis:
        return Result("not done yet", "not done yet -- replace None with your answer and run the cell again",
                      name=name)
    try:
        why = _compare(answer, expected, rtol, atol, "your answer")
    except _Invalid as e:
        return Result("invalid", f"cannot check it: {e}", hint=_pick_hint(hints, answer, expected, None), name=name)
    if why:
        # the comparison text may show the learner's own value, never the expected one
        return Result("wrong", why.replace(", which is not the reference value", ", not the expected value"),
                      hint=_pick_hint(hints, answer, expected, None), name=name)
    return Result("correct", "correct" + (f" (within rtol={rtol:g})" if rtol else ""), name=name)

