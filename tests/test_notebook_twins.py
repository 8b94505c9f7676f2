"""Every notebook has a text twin (jupytext, MyST markdown) holding the same cells, so a notebook's change is
reviewed as the twin's diff. Regenerate the twins with `make twins` (scripts/notebook_tools.py twins)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import notebook_tools as nt  # noqa: E402

NOTEBOOKS = nt.all_notebooks()
FIX = "run `make twins` (or: python scripts/notebook_tools.py twins)"


def test_the_notebooks_are_found():
    assert len([p for p in NOTEBOOKS if p.parent.name == "notebooks"]) >= 8


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_each_twin_holds_the_notebooks_cells(notebook):
    twin = nt.twin_path(notebook)
    assert twin.is_file(), f"{twin.relative_to(ROOT)} is missing: {FIX}"
    twin_cells, cells = nt.read_twin_cells(twin), nt.notebook_cells(notebook)
    differ = [i for i, (a, b) in enumerate(zip(twin_cells, cells)) if a != b]
    assert len(twin_cells) == len(cells) and not differ, (
        f"{twin.relative_to(ROOT)} differs from its notebook ({len(twin_cells)} vs {len(cells)} cells"
        f"{f', first different cell {differ[0]}' if differ else ''}): {FIX}, or after editing the text, "
        f"jupytext --sync {twin.relative_to(ROOT)}"
    )


def test_no_twin_without_its_notebook():
    assert nt.orphan_twins() == [], f"twins of deleted or renamed notebooks: {FIX}"


def test_a_changed_cell_is_caught_and_the_sync_is_idempotent(tmp_path, monkeypatch):
    """The check can fail: a notebook edited after its twin was written differs from it; a sync writes
    the twin once, and a second sync finds nothing to do."""
    import nbformat

    monkeypatch.setattr(nt, "ROOT", tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "jupytext.toml").write_text((ROOT / "jupytext.toml").read_text())
    path = tmp_path / "notebooks" / "01_x.ipynb"
    nt.write_notebook(path, [nt.md("# Title"), nt.code("x = 1\nprint(x)", tags=("demo",))])
    assert nt.sync_twins() == [nt.twin_path(path)] and nt.sync_twins() == []
    assert "tags: [demo]" in nt.twin_path(path).read_text()
    assert nt.read_twin_cells(nt.twin_path(path)) == nt.notebook_cells(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "x = 2\nprint(x)"
    nbformat.write(nb, path)
    assert nt.read_twin_cells(nt.twin_path(path)) != nt.notebook_cells(path)
    assert nt.sync_twins(check=True) == [nt.twin_path(path)]
    path.unlink()
    assert nt.orphan_twins() == [nt.twin_path(path)]
