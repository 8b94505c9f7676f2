"""utils.lab_call: call_verdict, the one verdict for a learner's call that did not return, is what every lab
check says (check_function and lab 03's choose_shard_factor alike)."""

import functools
import time

import pytest
from lab_asserts import stub

from utils import lab_planning, lab_quant, lab_shard_factor
from utils.lab_call import DEEP_NOT_IMPLEMENTED_HINT, NOT_DONE_MESSAGE, TIMEOUT_HINT, call_verdict, is_stub
from utils.labs import check_function


def _raise(*args, **kwargs):
    raise ValueError("bad input\nsecond line")


def _long(*args, **kwargs):
    raise RuntimeError("x" * 300)


def _spin(*args, **kwargs):
    while True:
        pass


def test_a_call_that_returns_gives_its_output_and_no_verdict():
    assert call_verdict(lambda a, b=1: a + b, (2,), {"b": 5}, name="f") == (None, 7)
    assert call_verdict(lambda: None, name="f") == (None, None)  # None is an output, not a failure


@pytest.mark.parametrize("fn, status, message", [
    (stub, "not done yet", NOT_DONE_MESSAGE),
    (_raise, "invalid", "case 1 of 3 (x): your function raised ValueError: bad input"),
    (lambda: 1 / 0, "invalid", "case 1 of 3 (x): your function raised ZeroDivisionError: division by zero"),
    (42, "invalid", "expected a function, got 42 (a int)"),
    ("f", "invalid", "expected a function, got 'f' (a str)"),
])
def test_each_verdict_and_where_it_names(fn, status, message):
    verdict, out = call_verdict(fn, name="ex", where="case 1 of 3 (x)")
    assert out is None and verdict.status == status and verdict.name == "ex"
    assert verdict.message == message and verdict.hint is None


def test_an_exception_shows_its_first_line_cut_at_200_characters_and_no_traceback():
    verdict, _ = call_verdict(_long, name="ex")
    assert verdict.message == "your function raised RuntimeError: " + "x" * 197 + "..."  # no `where`: no prefix
    assert "Traceback" not in repr(verdict)


def test_a_timeout_stops_the_call_and_gives_the_hint_asked_for():
    t0 = time.perf_counter()
    verdict, _ = call_verdict(_spin, name="ex", where="case 2 of 2 (y)", time_limit_s=0.3)
    assert time.perf_counter() - t0 < 5
    assert verdict.status == "invalid" and verdict.message == "case 2 of 2 (y): took longer than 0.3 s and was stopped"
    assert verdict.hint == TIMEOUT_HINT
    assert call_verdict(_spin, name="ex", time_limit_s=0.2, timeout_hint="no loop needed")[0].hint == "no loop needed"


@pytest.mark.parametrize("fn", [stub, _raise, 42])
def test_the_labs_say_the_same_for_the_same_failure(fn):
    """check_function and exercise 4's own check both go through call_verdict: the same words for the same failure."""
    core = check_function(fn, lambda *a: 1, [(1e9, 8, 80 * 2**30)], name="choose_shard_factor", time_limit_s=5)
    lab = lab_shard_factor.check_shard_factor(fn)
    assert (core.status, core.hint) == (lab.status, lab.hint)
    assert core.message.split(": ", 1)[-1] == lab.message.split(": ", 1)[-1]  # all but the case label


def _module_without_forward(*args, **kwargs):
    import torch

    return torch.nn.Module()(torch.zeros(1))


def _calls_an_unfinished_helper(*args, **kwargs):
    return stub(*args, **kwargs)


class _StubObject:
    def __call__(self, *args, **kwargs):
        raise NotImplementedError()


def _wrapped(fn):  # as a lab's check wraps the learner's function (lab_planning._arrays_as_lists, lab_quant._after)
    def call(*args, **kwargs):
        return fn(*args, **kwargs)

    call.__wrapped__ = fn
    return call


@pytest.mark.parametrize("fn, status", [
    (stub, "not done yet"),
    (_StubObject(), "not done yet"),
    (functools.partial(stub, 1), "not done yet"),
    (_wrapped(stub), "not done yet"),
    (_module_without_forward, "invalid"),  # raised deep inside torch: a real error, not the stub
    (_calls_an_unfinished_helper, "invalid"),  # another exercise's stub, one call down
    (_wrapped(_module_without_forward), "invalid"),
])
def test_only_the_learners_own_not_implemented_error_is_the_stub(fn, status):
    verdict, _ = call_verdict(fn, name="ex")
    assert verdict.status == status, verdict
    if status == "invalid":
        assert "NotImplementedError" in verdict.message and verdict.hint == DEEP_NOT_IMPLEMENTED_HINT
    assert is_stub(fn, NotImplementedError()) is False  # an exception never raised has no traceback


def test_the_checks_that_wrap_a_learners_function_still_see_its_stub():
    assert lab_planning.check_params_and_tokens(stub).status == "not done yet"
    assert lab_quant.check_quantize_linears(stub).status == "not done yet"
    deep = lab_planning.check_params_and_tokens(_module_without_forward)
    assert deep.status == "invalid" and "Module [Module] is missing" in deep.message
