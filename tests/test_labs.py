"""utils.labs: expected values come from utils.memory, verdicts teach without revealing, the lab starts blank."""

import re
from pathlib import Path

import nbformat
import pytest

from utils import labs
from utils.labs import EXERCISES, MAKE_IT_FIT_OPTIONS, check, expected_answer
from utils.memory import (
    GB,
    activation_memory,
    gpus_needed,
    model_memory,
    training_memory,
    zero_memory_per_device,
)

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "labs" / "01_memory_budget.ipynb"
SOLUTIONS = ROOT / "labs" / "solutions" / "01_memory_budget_solutions.ipynb"
NUMERIC = [k for k, e in EXERCISES.items() if not e.categorical]

DIRECT = {  # each exercise's answer, computed straight from utils.memory
    "ex1": lambda: model_memory(7e9, "bf16") / GB,
    "ex2": lambda: training_memory(1e9, precision="fp32", optimizer="adam").total / GB,
    "ex3": lambda: zero_memory_per_device(13e9, 8, 3) / GB,
    "ex4": lambda: activation_memory(seq_len=2048, batch_size=4, hidden_size=4096, n_layers=1,
                                     n_heads=32).per_layer / GB,
    "ex5": lambda: gpus_needed(30e9, "A100-80", "pretrain", precision="fp32", optimizer="adam"),
    "ex6": lambda: next(k for k, (p, o, _) in MAKE_IT_FIT_OPTIONS.items()
                        if gpus_needed(7e9, "A100-80", "finetune", precision=p, optimizer=o) == 1),
}


def _numbers_in(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


def _reveals(message: str, exercise_id: str) -> bool:
    ex, expected = EXERCISES[exercise_id], expected_answer(exercise_id)
    if ex.categorical:
        return re.search(rf"\b{re.escape(expected)}\b", message.split(":", 1)[1], re.I) is not None
    tol = max(ex.rel_tol, 1e-3) * abs(expected)
    return any(abs(x - expected) <= tol for x in _numbers_in(message.split(":", 1)[1]))


def test_registry_covers_the_lab():
    assert set(EXERCISES) == set(DIRECT)


@pytest.mark.parametrize("exercise_id", list(DIRECT))
def test_expected_value_is_the_library_value(exercise_id):
    assert expected_answer(exercise_id) == DIRECT[exercise_id]()


def test_lecture_figures_behind_the_exercises():  # sanity: the library still says what the lab teaches
    assert expected_answer("ex1") == pytest.approx(14)
    assert expected_answer("ex2") == pytest.approx(24)
    assert expected_answer("ex3") == pytest.approx(26)
    assert expected_answer("ex5") == 9


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_correct_answer_passes(exercise_id):
    v = check(exercise_id, expected_answer(exercise_id))
    assert v.ok and v.status == "correct" and repr(v) == f"{exercise_id}: correct"
    assert check(exercise_id, expected_answer(exercise_id), strict=True)


@pytest.mark.parametrize("exercise_id", NUMERIC)
def test_tolerance(exercise_id):
    ex, expected = EXERCISES[exercise_id], expected_answer(exercise_id)
    if ex.rel_tol:
        assert check(exercise_id, expected * (1 + ex.rel_tol / 2)).ok
    assert not check(exercise_id, expected * (1 + 2 * ex.rel_tol) + 1).ok


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_wrong_answers_get_a_hint_without_the_expected_value(exercise_id):
    ex, expected = EXERCISES[exercise_id], expected_answer(exercise_id)
    wrong = [m for m, _ in ex.mistakes()]
    if ex.categorical:
        wrong += [k for k in ex.choices if k != expected]
    else:
        wrong += [expected * 3.7, expected / 10, 0, -1]
    seen_specific = False
    for answer in wrong:
        v = check(exercise_id, answer)
        if not ex.categorical and abs(float(answer) - expected) <= ex.rel_tol * abs(expected):
            continue  # a "mistake" that equals the answer is never used as one
        assert v.status == "not quite" and not v.ok, (answer, v)
        assert v.message.startswith(f"{exercise_id}: not quite: ")
        assert not _reveals(v.message, exercise_id), v.message
        seen_specific |= not v.message.endswith(ex.hint)
    assert seen_specific, "at least one common mistake gets its own hint"


def test_adam_hint_teaches():
    msg = check("ex2", 16).message
    assert "activations" in msg and "24" not in msg
    assert "Adam's two fp32 states" in check("ex2", 3.0).message


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_none_is_not_answered_yet(exercise_id):
    v = check(exercise_id, None)
    assert v.status == "not answered" and not v
    assert "not answered yet" in str(v)


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_strict_raises_unless_correct(exercise_id):
    ex = EXERCISES[exercise_id]
    wrong = next(k for k in ex.choices if k != expected_answer(exercise_id)) if ex.categorical else -1.0
    for answer in (None, wrong, [1, 2]):
        with pytest.raises(AssertionError, match=exercise_id):
            check(exercise_id, answer, strict=True)


def test_unknown_id_lists_valid_ids():
    with pytest.raises(ValueError, match="ex99") as info:
        check("ex99", 1)
    assert all(k in str(info.value) for k in EXERCISES)
    with pytest.raises(ValueError):
        check(["ex1"], 1)


@pytest.mark.parametrize("answer", ["14 GB", "14", True, [14], float("nan"), float("inf")])
def test_bad_types_for_numbers_get_a_clear_message(answer):
    v = check("ex1", answer)
    assert v.status == "invalid" and "number" in v.message and "GB" in v.message


def test_numpy_numbers_are_numbers():
    np = pytest.importorskip("numpy")
    assert check("ex1", np.float64(expected_answer("ex1"))).ok
    assert check("ex5", np.int64(expected_answer("ex5"))).ok


def test_categorical_answers_ignore_case_and_spaces():
    right = expected_answer("ex6")
    for answer in (right, right.upper(), f"  {right.upper()} "):
        assert check("ex6", answer).ok
    assert check("ex6", "z").status == "invalid"
    bad = check("ex6", 3)
    assert bad.status == "invalid" and "'a'" in bad.message and "string" in bad.message


def test_make_it_fit_has_exactly_one_right_option(monkeypatch):
    fitting = [k for k in MAKE_IT_FIT_OPTIONS if labs._fits_one_gpu(k)]
    assert fitting == [expected_answer("ex6")]
    monkeypatch.setitem(MAKE_IT_FIT_OPTIONS, "e", ("fp32", "adam8bit", "a duplicate of d"))
    with pytest.raises(RuntimeError, match="exactly one"):
        expected_answer("ex6")


def _code(nb_path):
    return [c.source for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code"]


def test_lab_notebook_starts_blank():
    sources = _code(LAB)
    answers = [s for s in sources if re.match(r"answer_\d+\s*=", s)]
    assert len(answers) == len(EXERCISES)
    for s in answers:
        assert re.fullmatch(r"answer_\d+ = None  # your answer: .+", s), s
    for exercise_id in EXERCISES:
        n = exercise_id.removeprefix("ex")
        assert f'check("{exercise_id}", answer_{n})' in "\n".join(sources)


def test_lab_outputs_say_not_answered_and_solutions_say_correct():
    for path, expected in ((LAB, "not answered yet"), (SOLUTIONS, "correct")):
        nb = nbformat.read(path, as_version=4)
        checks = [c for c in nb.cells if c.cell_type == "code" and re.search(r'^check\("ex', c.source, re.M)]
        assert len(checks) == len(EXERCISES)
        for c in checks:
            assert c.source.startswith("# NBVAL_CHECK_OUTPUT")
            text = "".join(o.get("data", {}).get("text/plain", "") for o in c.outputs)
            assert expected in text, (path.name, c.source, text)
        if path == SOLUTIONS:
            assert all("strict=True" in c.source for c in checks)


# ------------------------------------------------------------------ the checking core (issue 14)
import threading  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from utils.labs import STATUSES, Result, case, check_function, check_value, close, report  # noqa: E402


def _ref_q(x):
    return torch.round(x * 2).to(torch.int8), x.abs().amax()


def _learner_q(x):
    return torch.round(x * 2).to(torch.int8), x.abs().amax()


CORE_CASES = [case(torch.randn(16, generator=torch.Generator().manual_seed(0)), label="random"),
              case(-torch.rand(8) - 0.5, label="negative only")]


def _spin(x):
    while True:
        pass


def _sleep(x):
    time.sleep(30)


@pytest.mark.parametrize("fn, status, words", [
    (_learner_q, "correct", "all 2 cases"),
    (lambda x: (_ for _ in ()).throw(NotImplementedError()), "not done yet", "not done yet"),
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
