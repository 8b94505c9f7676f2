"""utils.io: a file written atomically is either the old one or the new one, never half of one."""

import pytest

from utils.io import write_text_atomically


def test_write_text_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    write_text_atomically(path, '{"loss": 1}')
    write_text_atomically(path, '{"loss": 2}')
    assert path.read_text() == '{"loss": 2}'
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "run.json"
    write_text_atomically(path, "old")
    with pytest.raises(TypeError):
        write_text_atomically(path, b"bytes are not text")  # fails while writing the temporary file
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["run.json"]
