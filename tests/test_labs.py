"""utils.labs (the checking core) and the student notebooks generated from the solutions (scripts/make_student_labs.py).

The lab-specific checks are tested in tests/test_lab_<topic>.py."""

import re
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
import torch

from utils.labs import STATUSES, Result, case, check_function, check_value, close, report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_student_labs as msl  # noqa: E402

SOLUTIONS = msl.solution_notebooks()


# ------------------------------------------------------------------ the checking core (issue 14)


def _ref_q(x):
    return torch.round(x * 2).to(torch.int8), x.abs().amax()


def _learner_q(x):
    return torch.round(x * 2).to(torch.int8), x.abs().amax()


CORE_CASES = [case(torch.randn(16, generator=torch.Generator().manual_seed(0)), label="random"),
              case(-torch.rand(8) - 0.5, label="negative only")]


def _spin(x):
    while True:
        pass


def _stub(x):
    raise NotImplementedError()


def _calls_a_module_without_forward(x):  # a NotImplementedError from deep inside a real call is not the stub
    return torch.nn.Module()(x)


def _sleep(x):
    time.sleep(30)


@pytest.mark.parametrize("fn, status, words", [
    (_learner_q, "correct", "all 2 cases"),
    (_stub, "not done yet", "not done yet"),
    (_calls_a_module_without_forward, "invalid", "raised NotImplementedError: Module [Module] is missing"),
    (lambda x: (torch.round(x * 2).to(torch.int8), torch.where(x.amax() > 0, x.abs().amax(), x.amax())), "wrong",
     "case 2 of 2 (negative only)"),
    (lambda x: x[99], "invalid", "raised IndexError: index 99"),
    (lambda x: (x * 2, x.abs().amax()), "invalid", "holds float32 values; the exercise asks for int8"),
    (lambda x: (torch.round(x * 2).to(torch.int8), torch.tensor(float("nan"))), "invalid", "NaN"),
    (lambda x: torch.round(x * 2).to(torch.int8), "invalid", "not a tuple of 2 values"),
    (lambda x: (torch.round(x * 2).to(torch.int8),), "invalid", "holds 1 values, not 2"),
    (_spin, "invalid", "took longer than 0.5 s"),
    (_sleep, "invalid", "took longer than 0.5 s"),
    (42, "invalid", "expected a function"),
])
def test_check_function_tells_the_statuses_apart(fn, status, words):
    t0 = time.perf_counter()
    r = check_function(fn, _ref_q, CORE_CASES, name="q", time_limit_s=0.5)
    assert r.status == status and words in r.message, r
    assert time.perf_counter() - t0 < 10
    assert "Traceback" not in repr(r) and repr(r).startswith("[") and "\n" not in repr(r)
    assert bool(r) == (status == "correct")


def test_a_spinning_function_is_stopped_not_left_running():
    before = set(threading.enumerate())
    assert check_function(_spin, _ref_q, CORE_CASES, name="q", time_limit_s=0.2).status == "invalid"
    started = set(threading.enumerate()) - before
    deadline = time.time() + 5
    while time.time() < deadline and any(t.is_alive() for t in started):
        time.sleep(0.05)
    assert not any(t.is_alive() for t in started)


def test_hints_are_tried_in_order_and_a_failing_predicate_is_skipped():
    hints = [(lambda got, exp, c: 1 / 0, "broken"), (lambda got, exp, c: close(got[1], exp[1] * -1), "use |x|"),
             (lambda got, exp, c: True, "fallback")]
    r = check_function(lambda x: (torch.round(x * 2).to(torch.int8), x.amin()), _ref_q, CORE_CASES[1:], name="q",
                       hints=hints)
    assert r.status == "wrong" and r.hint == "use |x|"


def test_learner_changing_inputs_in_place_cannot_change_the_reference():
    def learner(x):
        x.mul_(0)
        return torch.round(x * 2).to(torch.int8), x.abs().amax()

    assert check_function(learner, _ref_q, CORE_CASES, name="q").status == "wrong"


@pytest.mark.parametrize("answer, status", [
    (None, "not done yet"), (..., "not done yet"), (3.0, "correct"), (3.0000001, "correct"), (3.1, "wrong"),
    ("3", "invalid"), (True, "invalid"), (10**400, "invalid"), (float("nan"), "invalid"), (float("inf"), "invalid"),
    (torch.tensor(3.0), "correct"), ([3.0], "invalid"),
])
def test_check_value(answer, status):
    r = check_value(answer, 3.0, name="v", hints=[(lambda a, e, c: True, "think again")])
    assert r.status == status, r
    assert "3.0" not in r.message.replace("3.0000001", "") or status != "wrong"
    if status == "wrong":
        assert r.hint == "think again"


def test_check_value_never_shows_the_expected_value():
    r = check_value(12.5, 16.25, name="v")
    assert r.status == "wrong" and "16.25" not in repr(r) and "16.25" not in r._repr_html_()


def test_result_and_report(capsys):
    with pytest.raises(ValueError, match="status"):
        Result("maybe", "x")
    assert set(STATUSES) == {"correct", "wrong", "invalid", "not done yet"}
    report(check_value(1, 1, name="a"), [check_value(2, 1, name="b")])
    out = capsys.readouterr().out
    assert "a " in out and "wrong" in out and "1 of 2 correct" in out


def test_bad_arguments_to_the_checks():
    with pytest.raises(ValueError, match="name"):
        check_value(1, 1, name="")
    with pytest.raises(ValueError, match="rtol"):
        check_value(1, 1, name="x", rtol=-1)
    with pytest.raises(ValueError, match="cases"):
        check_function(abs, abs, [], name="x")
    with pytest.raises(ValueError, match="time_limit_s"):
        check_function(abs, abs, [(1,)], name="x", time_limit_s=0)


# ------------------------------------------------------------------ student notebooks from the solutions


def test_every_lab_has_a_solution_and_a_student_notebook():
    assert SOLUTIONS, "no solution notebooks found"
    students = sorted((ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
    assert [msl.student_path(p) for p in SOLUTIONS] == students


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_committed_student_notebook_is_generated_from_the_solutions(solution):
    assert not msl.out_of_date(solution), f"run `make labs`: {msl.student_path(solution).name} is out of date"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_student_notebook_holds_no_solution_and_says_not_done_yet(solution):
    student = nbformat.read(msl.student_path(solution), as_version=4)
    text = "\n".join(c.source for c in student.cells)
    for marker in (msl.BEGIN, msl.END, msl.BEGIN_HIDDEN, msl.END_HIDDEN, "(solutions)"):
        assert marker not in text
    outputs = [o for c in student.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(o.output_type == "error" for o in outputs)
    shown = "\n".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    assert "not done yet" in shown and "[ok]" not in shown and "[wrong]" not in shown


def _grade_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("grade")]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solutions_notebook_is_executed_and_every_check_is_correct(solution):
    nb = nbformat.read(solution, as_version=4)
    checks = _grade_cells(nb)
    assert checks, "the check cells carry nbgrader metadata (grade: true)"
    for c in checks:
        assert msl.BEGIN_HIDDEN in c.source  # the assert that makes the solution notebook fail when wrong
        assert not any(o.output_type == "error" for o in c.outputs), c.source
        if c.metadata.nbgrader["points"] > 0:  # a check cell (0 points: a claim about the learner's results)
            shown = "".join(o.get("data", {}).get("text/plain", "") for o in c.outputs)
            assert shown.startswith("[ok]"), (c.source, shown)


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_hidden_tests_sit_only_in_grade_cells(solution):
    """nbgrader's ClearHiddenTests (enforce_metadata, its default) refuses a hidden-test region in any other cell."""
    nb = nbformat.read(solution, as_version=4)
    graded = {id(c) for c in _grade_cells(nb)}
    stray = [k for k, c in enumerate(nb.cells) if "BEGIN HIDDEN TESTS" in c.source and id(c) not in graded]
    assert not stray, f"hidden-test regions outside a `grade: true` cell: cells {stray}"
    for c in _grade_cells(nb):
        meta = c.metadata.nbgrader
        assert meta["locked"] and not meta["solution"] and meta["points"] >= 0 and meta["grade_id"], meta
    ids = [c.metadata.nbgrader["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "nbgrader needs unique grade ids"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_setup_cell_falls_back_to_the_repository_root(solution):
    """Opened outside `make lab`, the set-up cell puts the checkout on sys.path: a path relative to the notebook."""
    for path, nb in ((solution, nbformat.read(solution, as_version=4)), (msl.student_path(solution), msl.make_student(solution))):
        setup = [c for c in nb.cells if msl.nt.SETUP_TAG in c.get("metadata", {}).get("tags", [])]
        assert len(setup) == 1
        fallback = re.search(r'sys\.path\.insert\(0, os\.path\.abspath\("([./]+)"\)\)', setup[0].source)
        assert fallback, setup[0].source
        assert (path.parent / fallback.group(1)).resolve() == ROOT, (path.name, fallback.group(1))


def _cell(source, cell_type="code"):
    return msl.student_source(source, cell_type, "test")


def test_generator_follows_nbgrader_conventions():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\nprint(1)"
    assert _cell(src) == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(1)"
    src = "a = 1\n### BEGIN SOLUTION\nplan = {\n    'x': 1,\n}\nk: int = 3\n### END SOLUTION"
    assert _cell(src) == "a = 1\nplan = None  # YOUR CODE HERE\nk = None  # YOUR CODE HERE"
    src = "r = check(f)\n### BEGIN HIDDEN TESTS\nassert r.ok\n### END HIDDEN TESTS\nr"
    assert _cell(src) == "r = check(f)\nr"
    assert _cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "markdown") == "Why?\nYOUR ANSWER HERE"


@pytest.mark.parametrize("src, words", [
    ("### BEGIN SOLUTION\nx = 1", "without"),
    ("x = 1\n### END SOLUTION", "without"),
    ("### BEGIN SOLUTION\nprint(1)\n### END SOLUTION", "must assign"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
])
def test_generator_rejects_broken_markers(src, words):
    with pytest.raises(ValueError, match=words):
        _cell(src)


def test_student_path_naming():
    assert msl.student_path(ROOT / "labs/solutions/01_x_solutions.ipynb") == ROOT / "labs/01_x.ipynb"
    with pytest.raises(ValueError, match="_solutions.ipynb"):
        msl.student_path(ROOT / "labs/solutions/01_x.ipynb")


def test_cases_as_tuples_dicts_and_bare_values():
    def ref(a, b=2):
        return {"sum": a + b, "pair": (a, torch.tensor([float(b)]))}

    assert check_function(ref, ref, [(1,), {"a": 2, "b": 5}, 3], name="f").ok
    r = check_function(lambda a, b=2: {"sum": a + b, "pair": (a, torch.tensor([b + 1.0]))}, ref,
                       [{"a": 2, "b": 5}], name="f")
    assert r.status == "wrong" and "case 1 of 1 (a=2, b=5)" in r.message and "output['pair'][1]" in r.message
