"""The course map agrees with the files and the README."""

from pathlib import Path

import pytest

from utils.course import COURSE_MAP, Lesson, course_map_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_on_disk_is_on_the_map_and_in_the_readme():
    on_disk = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    mapped = {lesson.file for lesson in COURSE_MAP}
    readme = (ROOT / "README.md").read_text()
    for name in on_disk:
        assert name in mapped, f"{name} is missing from utils.course.COURSE_MAP"
        assert name in readme, f"{name} is not named in README.md"


def test_map_rows_and_status():
    table = course_map_markdown()
    assert table.count("\n") == len(COURSE_MAP) + 1
    assert "| 00 | `00_welcome_and_setup.ipynb`" in table and "available" in table


def test_readme_map_agrees_with_course_map():
    rows = {line.split("|")[1].strip(): line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| 0")}
    for lesson in COURSE_MAP:
        row = rows[lesson.number]
        assert lesson.file in row
        assert f"| {lesson.minutes_cpu} / {lesson.minutes_gpu} |" in row, f"README minutes for {lesson.number}"
        assert ("(planned)" in row) != lesson.available, f"README status for {lesson.number}"


def test_a_malformed_row_cannot_exist():
    good = dict(number="09", file="09_x.ipynb", topic="t", minutes_cpu=1, minutes_gpu=1, hardware="any")
    Lesson(**good)
    for change, argument in [({"number": "9"}, "number"), ({"file": "10_x.ipynb"}, "file"),
                             ({"minutes_cpu": 0}, "minutes_cpu"), ({"minutes_gpu": True}, "minutes_gpu")]:
        with pytest.raises(ValueError, match=argument):
            Lesson(**{**good, **change})
