"""Shared by the lab test files: what a check's Result must say, and nbgrader's unanswered stub."""


def _verdict(result, status, words=()):
    """Assert a check's status, and that each of ``words`` appears in its message or hint."""
    assert result.status == status, result
    text = f"{result.message} {result.hint or ''}"
    for w in words:
        assert w in text, (w, text)


def stub(*args, **kwargs):
    """A learner's function as the student notebook ships it."""
    raise NotImplementedError()
