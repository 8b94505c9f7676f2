"""Running a learner's function for a lab check: a time limit, and the verdict for a call that did not return.

Part of the labs' checking core (see :mod:`utils.labs`, which re-exports these names). Every check that calls
a learner's function goes through :func:`call_verdict`, so a stub, an exception, a timeout or something that
is not a function reads the same in every lab.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable

from utils.lab_compare import describe
from utils.lab_result import Result

#: The hint for a call stopped at the time limit, unless a check passes one that suits its exercise better.
TIMEOUT_HINT = ("look for a loop that never ends, or a loop in Python over every value of a large tensor (use "
                "tensor operations instead)")
#: What a learner reads while nbgrader's stub is still in place.
NOT_DONE_MESSAGE = "not done yet -- replace `raise NotImplementedError()` with your code and run the cell again"

#: The hint for a NotImplementedError raised below the learner's function, not by it.
DEEP_NOT_IMPLEMENTED_HINT = ("it came from a function yours calls, not from your function itself: an exercise "
                             "it builds on still raises NotImplementedError, or a library call is not implemented")


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


def _learner_code(fn) -> set:
    """The code objects that count as the learner's own function: ``fn``'s, and those of what it wraps (a
    checker's wrapper sets ``__wrapped__``; also bound methods, ``functools.partial``, callable objects)."""
    codes, todo, seen = set(), [fn], set()
    while todo:
        f = todo.pop()
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        if getattr(f, "__code__", None) is not None:
            codes.add(f.__code__)
        todo += [getattr(f, "__wrapped__", None), getattr(f, "__func__", None)]
        if isinstance(f, functools.partial):
            todo.append(f.func)
        elif not hasattr(f, "__code__") and not hasattr(f, "__func__"):
            todo.append(type(f).__call__ if callable(f) else None)  # a callable object: its __call__
    return codes


def is_stub(fn, error: BaseException) -> bool:
    """True when ``error`` is nbgrader's stub: a ``NotImplementedError`` raised by the learner's function
    itself (the innermost frame of its traceback), not one raised deeper down by a call it makes (say, an
    ``nn.Module`` without ``forward``), which is an error to report."""
    if not isinstance(error, NotImplementedError) or error.__traceback__ is None:
        return False
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code in _learner_code(fn)


def call_verdict(fn, args: tuple = (), kwargs: dict | None = None, *, name: str, where: str = "",
                 time_limit_s: float = 10.0, timeout_hint: str = TIMEOUT_HINT) -> tuple[Result | None, object]:
    """Call a learner's ``fn(*args, **kwargs)`` within ``time_limit_s`` seconds: ``(None, output)`` when it
    returned, else ``(verdict, None)`` with the :class:`Result` the check shows as it is.

    The verdicts: "invalid" for something that is not a function, a call stopped at the time limit (with
    ``timeout_hint``) or an exception (its type and first line, never a traceback); "not done yet" for
    nbgrader's ``raise NotImplementedError()`` stub, raised by ``fn`` itself (see :func:`is_stub`; one raised
    deeper down is "invalid"). ``where`` (e.g. ``case 2 of 5 (all zeros)``) prefixes the timeout and exception
    messages; what the output is worth is left to the caller.
    """
    if not callable(fn):
        return Result("invalid", f"expected a function, got {describe(fn)} (a {type(fn).__name__})", name=name), None
    kind, out = call_with_time_limit(fn, tuple(args), dict(kwargs or {}), time_limit_s)
    at = f"{where}: " if where else ""
    if kind == "timeout":
        return Result("invalid", f"{at}took longer than {time_limit_s:g} s and was stopped", hint=timeout_hint,
                      name=name), None
    if kind == "raised":
        if is_stub(fn, out):
            return Result("not done yet", NOT_DONE_MESSAGE, name=name), None
        hint = DEEP_NOT_IMPLEMENTED_HINT if isinstance(out, NotImplementedError) else None
        return Result("invalid", f"{at}your function raised {_exc_text(out)}", hint=hint, name=name), None
    return None, out
