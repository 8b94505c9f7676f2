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
``utils/lab_<topic>.py`` and are built from :func:`check_function` and :func:`check_value`.

This module holds the two checks and re-exports the core they are built on, so ``from utils.labs import ...``
reaches all of it: :mod:`utils.lab_result` (:class:`Result`, :func:`report`), :mod:`utils.lab_compare`
(cases, :func:`describe`, :func:`close`) and :mod:`utils.lab_call` (:func:`call_with_time_limit`, and
:func:`call_verdict`, the one verdict for a learner's call that did not return, which every check uses).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from utils.lab_call import NOT_DONE_MESSAGE, TIMEOUT_HINT, call_verdict, call_with_time_limit
from utils.lab_compare import Case, Uncomparable, as_case, case, case_text, close, describe, mismatch
from utils.lab_result import STATUSES, Result, report
from utils.validate import check_number

__all__ = ["STATUSES", "Result", "report", "Case", "case", "describe", "close", "call_with_time_limit", "call_verdict",
           "NOT_DONE_MESSAGE", "TIMEOUT_HINT", "Hint", "check_function", "check_value"]

#: A hint: ``(predicate(learner_output, expected, case) -> bool, text)``, tried in order on a wrong answer.
Hint = tuple[Callable[..., bool], str]


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
    cases = [as_case(c) for c in cases]
    if not cases:
        raise ValueError("cases must hold at least one case, got none")
    if not callable(learner_fn):  # said before any reference runs (some run processes)
        return call_verdict(learner_fn, name=name)[0]
    n = len(cases)
    for i, c in enumerate(cases):
        expected = reference_fn(*c.args, **c.kwargs)  # first, and copied: the learner may change inputs in place
        try:
            expected = copy.deepcopy(expected)
        except Exception:  # noqa: BLE001 - an output that cannot be copied is kept as is
            pass
        where = case_text(c, i, n)
        failed, out = call_verdict(learner_fn, c.args, c.kwargs, name=name, where=where, time_limit_s=time_limit_s)
        if failed is not None:
            return failed
        try:
            why = mismatch(out, expected, rtol, atol, "output")
        except Uncomparable as e:
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
        why = mismatch(answer, expected, rtol, atol, "your answer")
    except Uncomparable as e:
        return Result("invalid", f"cannot check it: {e}", hint=_pick_hint(hints, answer, expected, None), name=name)
    if why:
        # the comparison text may show the learner's own value, never the expected one
        return Result("wrong", why.replace(", which is not the reference value", ", not the expected value"),
                      hint=_pick_hint(hints, answer, expected, None), name=name)
    return Result("correct", "correct" + (f" (within rtol={rtol:g})" if rtol else ""), name=name)

