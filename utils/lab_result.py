"""A lab check's verdict: :class:`Result` (one line a learner reads) and :func:`report` (a table of them).

Part of the labs' checking core (see :mod:`utils.labs`, which re-exports these names).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

#: What a check can say, best first.
STATUSES = ("correct", "wrong", "invalid", "not done yet")
_MARK = {"correct": "[ok]", "wrong": "[wrong]", "invalid": "[invalid]", "not done yet": "[todo]"}
_COLOUR = {"correct": "#1a7f37", "wrong": "#b35900", "invalid": "#cf222e", "not done yet": "#57606a"}


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
