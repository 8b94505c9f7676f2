"""utils.display: bytes in a unit, plain-text tables."""

import pytest

from utils.display import format_bytes, format_table


def test_format_bytes():
    assert format_bytes(24e9) == "24.0 GB"
    assert format_bytes(4_200e9, digits=0) == "4,200 GB"
    assert format_bytes(2**30, "GiB") == "1.0 GiB"


def test_format_table():
    assert format_table(["a", "bb"], [["x", 1], ["yyy", 22]]) == "a    bb\n---  --\nx     1\nyyy  22"
    with pytest.raises(ValueError, match="rows"):
        format_table(["a"], [[1, 2]])


def test_bad_unit_names_the_argument():
    with pytest.raises(ValueError, match="unit"):
        format_bytes(1, "PB")
