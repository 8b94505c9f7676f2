"""Generate the student lab notebooks from the solution notebooks (the one source of truth), nbgrader-style.

    python scripts/make_student_labs.py            # write labs/NN_name.ipynb from labs/solutions/NN_name_solutions.ipynb
                                                   # and execute the ones whose sources changed
    python scripts/make_student_labs.py --check    # exit 1 if a committed student notebook is out of date

The rules are nbgrader's (``nbgrader generate_assignment``), so an instructor can also hand the solution
notebooks to nbgrader as they are:

* in a code cell, a ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region inside a function body (indented)
  becomes ``# YOUR CODE HERE`` + ``raise NotImplementedError()`` at the region's indentation;
* a region at the top level of a cell that assigns values (``plan = {...}``) becomes one line per assigned
  name, ``name = None  # YOUR CODE HERE``, so the notebook still runs to the end and the check says "not done
  yet" (nbgrader would put ``raise NotImplementedError()`` there: the one difference);
* ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions are removed;
* in a markdown cell, a solution region becomes ``YOUR ANSWER HERE``;
* cells tagged ``solution-only`` are dropped; the title loses " (solutions)", the Colab badge and set-up cell
  point at the student notebook; outputs are cleared (the make target executes the new notebook and
  rewrites the text twins, ``NN_name.md``, of both notebooks: see ``make twins``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import notebook_tools as nt  # noqa: E402

SOLUTIONS = ROOT / "labs" / "solutions"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
SOLUTION_ONLY_TAG = "solution-only"
_ASSIGNED = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=]+)?=(?!=)")


def student_path(solution: Path) -> Path:
    """labs/solutions/01_memory_budget_solutions.ipynb -> labs/01_memory_budget.ipynb"""
    if not solution.name.endswith("_solutions.ipynb"):
        raise ValueError(f"solution={solution.name!r} is not valid; accepted: a name ending in _solutions.ipynb")
    return solution.parents[1] / solution.name.replace("_solutions.ipynb", ".ipynb")


def _regions(lines: list[str], begin: str, end: str, where: str):
    """Yield (start, stop) line indices of each begin..end region (markers included)."""
    i = 0
    while i < len(lines):
        if lines[i].strip() == begin:
            for j in range(i + 1, len(lines)):
                if lines[j].strip() == end:
                    yield i, j
                    i = j
                    break
                if lines[j].strip() == begin:
                    raise ValueError(f"{where}: nested {begin!r}")
            else:
                raise ValueError(f"{where}: {begin!r} without {end!r}")
        elif lines[i].strip() == end:
            raise ValueError(f"{where}: {end!r} without {begin!r}")
        i += 1


def _replace(lines: list[str], begin: str, end: str, where: str, make) -> list[str]:
    out, last = [], 0
    for start, stop in list(_regions(lines, begin, end, where)):
        out += lines[last:start] + make(lines[start], lines[start + 1 : stop])
        last = stop + 1
    return out + lines[last:]


def _code_stub(where: str):
    def make(begin_line: str, body: list[str]) -> list[str]:
        indent = begin_line[: len(begin_line) - len(begin_line.lstrip())]
        if indent:
            return [indent + STUB[0], indent + STUB[1]]
        names = list(dict.fromkeys(m.group(1) for line in body if (m := _ASSIGNED.match(line))))
        if not names:
            raise ValueError(f"{where}: a top-level solution region must assign a value (name = ...)")
        return [f"{name} = None  {STUB[0]}" for name in names]

    return make


def student_source(source: str, cell_type: str, where: str) -> str:
    lines = source.split("\n")
    if cell_type == "code":
        lines = _replace(lines, BEGIN_HIDDEN, END_HIDDEN, where, lambda b, body: [])
        lines = _replace(lines, BEGIN, END, where, _code_stub(where))
    else:
        lines = _replace(lines, BEGIN, END, where, lambda b, body: ["YOUR ANSWER HERE"])
    return "\n".join(lines)


def make_student(solution: Path):
    """The student notebook (an nbformat node, outputs cleared) generated from ``solution``."""
    import nbformat

    nb = nbformat.read(solution, as_version=4)
    sol_rel = solution.relative_to(ROOT).as_posix()
    stu_rel = student_path(solution).relative_to(ROOT).as_posix()
    cells = []
    for k, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_ONLY_TAG in tags:
            continue
        where = f"{sol_rel}, cell {k}"
        cell = nbformat.from_dict(dict(cell))
        if nt.SETUP_TAG in tags:
            cell.source = nt.setup_source(str(Path(stu_rel).parent))
        else:
            cell.source = student_source(cell.source, cell.cell_type, where)
        if k == 0:
            cell.source = cell.source.replace(nt.badge_markdown(sol_rel), nt.badge_markdown(stu_rel))
            first, _, rest = cell.source.partition("\n")
            cell.source = first.replace(" (solutions)", "") + ("\n" + rest if rest else "")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    return nb


def _signature(nb) -> list[tuple]:
    """What must agree between a committed student notebook and the generated one: cells and sources."""
    return [(c.cell_type, c.source, tuple(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def out_of_date(solution: Path) -> bool:
    import nbformat

    target = student_path(solution)
    if not target.exists():
        return True
    return _signature(nbformat.read(target, as_version=4)) != _signature(make_student(solution))


def load_solutions(solution: Path) -> dict:
    """Run a solution notebook's imports cell and its solution cells (nbgrader ``solution: true``); return the
    namespace (for tests: the reference answers come from the one source of truth, not from a copy)."""
    import nbformat

    nb = nbformat.read(solution, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and nt.SETUP_TAG not in c.get("metadata", {}).get("tags", [])]
    namespace: dict = {}
    exec(compile(code[0].source, f"{solution.name}: imports", "exec"), namespace)  # noqa: S102
    for k, c in enumerate(code):
        if c.get("metadata", {}).get("nbgrader", {}).get("solution"):
            exec(compile(c.source, f"{solution.name}: code cell {k}", "exec"), namespace)  # noqa: S102
    return namespace


def solution_notebooks() -> list[Path]:
    return sorted(SOLUTIONS.glob("*_solutions.ipynb"))


def main(argv=None) -> int:
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("solutions", nargs="*", type=Path, help="solution notebooks (default: labs/solutions/*)")
    ap.add_argument("--check", action="store_true", help="only report out-of-date student notebooks (exit 1)")
    ap.add_argument("--no-execute", action="store_true", help="write the student notebooks without running them")
    args = ap.parse_args(argv)
    solutions = [p.resolve() for p in args.solutions] or solution_notebooks()
    stale = [p for p in solutions if out_of_date(p)]
    for p in stale:
        print(("out of date: " if args.check else "generating: ") + student_path(p).relative_to(ROOT).as_posix())
    if args.check:
        return 1 if stale else 0
    for p in stale:
        nbformat.write(make_student(p), student_path(p))
    rc = 0
    if stale and not args.no_execute:  # learners open executed notebooks: every check says "not done yet"
        cmd = [sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "--in-place",
               *(str(student_path(p)) for p in stale)]
        rc = subprocess.call(cmd, cwd=ROOT)
    for p in stale:  # the text twins (make twins) of the notebooks this run wrote, and of their solutions
        for nb in (p, student_path(p)):
            nt.twin_path(nb).write_text(nt.twin_text(nb), encoding="utf-8")
    if not stale:
        print("student notebooks are up to date")
    return rc


if __name__ == "__main__":
    sys.exit(main())
