"""Structure of every notebook: Colab badge and set-up cell, kernelspec, committed executed, the course shape,
no machine paths in outputs. (Running them is nbval's job: `make test` runs every notebook in fast mode.)"""

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import notebook_tools as nt  # noqa: E402

NOTEBOOKS = nt.all_notebooks()
IDS = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert (ROOT / "notebooks" / "00_welcome_and_setup.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_badge_and_setup_cell_are_consistent(path):
    rel = path.relative_to(ROOT).as_posix()
    assert nt.header_problems(nbformat.read(path, as_version=4), rel) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_executed_with_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code and all(c.execution_count for c in code), "commit notebooks executed (make run / run_notebooks.py)"
    counts = [c.execution_count for c in code]
    assert counts == sorted(counts), "cells were executed out of order"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parent.name == "notebooks"],
                         ids=[i for i in IDS if i.startswith("notebooks/")])
def test_course_shape(path):
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    for heading in ("## Learning goals", "## Summary", "## Check your understanding", "## Further reading"):
        assert heading in text, f"missing section {heading!r}"
    assert "<details>" in text, "answers to the questions belong in <details> blocks"
    assert re.search(r"time on CPU", text, re.I), "state the time and hardware needs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_machine_paths_or_secrets_in_outputs(path):
    blob = json.dumps([c.get("outputs", []) for c in nbformat.read(path, as_version=4).cells])
    assert not re.search(r"/(root|work|tmp|home|Users)/[A-Za-z0-9_.-]+", blob), "machine path in outputs"
    assert not re.search(r"hf_[A-Za-z0-9]{20,}", blob), "a Hugging Face token in outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_progress_bar_fragments_or_orphan_widget_state(path):
    nb = nbformat.read(path, as_version=4)
    bars = [i for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if nt.PROGRESS_BAR.search(o.get("text", ""))]
    assert not bars, f"progress-bar text in the outputs of cells {bars}: re-execute with scripts/run_notebooks.py"
    probe = nbformat.from_dict(json.loads(json.dumps(nb)))
    nt.clean_outputs(probe)
    assert probe.metadata == nb.metadata, "widget state that no output shows: re-execute with scripts/run_notebooks.py"


def test_clean_outputs_keeps_what_cells_printed():
    bar = "train:  58%|#####8    | 175/300 [00:37<00:27, 4.6it/s, loss=4.21]"
    outs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in
            ("table:\n", "\r" + bar, "\r" + bar.replace("58%", "100%"), "\n", "\nrow 1\n")]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=outs)])
    nb.metadata["widgets"] = {"state": {}}
    assert nt.clean_outputs(nb) > 0
    assert [o.text for o in nb.cells[0].outputs] == ["table:\n\nrow 1\n"] and "widgets" not in nb.metadata
    assert not nt.PROGRESS_BAR.search("loss 4.2 | 58% of the budget | 175/300 steps")  # a table row stays


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_remote_code_or_unsafe_loading(path):
    src = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert "trust_remote_code=True" not in src
    assert "weights_only=False" not in src


def test_stamp_rewrites_badges_from_one_url(tmp_path, monkeypatch):
    src = ROOT / "notebooks" / "00_welcome_and_setup.ipynb"
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    dst = tmp_path / "notebooks" / src.name
    dst.write_bytes(src.read_bytes())
    monkeypatch.setattr(nt, "ROOT", tmp_path)
    new = "https://github.com/example-org/fork"
    assert nt.stamp(new) == [dst]
    nb = nbformat.read(dst, as_version=4)
    assert nt.header_problems(nb, "notebooks/" + src.name, new) == []
    assert nt.header_problems(nb, "notebooks/" + src.name) != []  # the old URL is gone everywhere
    assert nt.stamp(new) == []  # idempotent
