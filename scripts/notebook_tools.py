"""Tools for the course notebooks: the standard header (Colab badge + set-up cell), re-stamping the
repository URL into every notebook, structural checks, building a notebook from cells, and the text twins.

Every notebook has a text twin beside it (``notebooks/02_x.ipynb`` -> ``notebooks/02_x.md``, MyST markdown
written by jupytext with the options of ``jupytext.toml``, no outputs): a change to a notebook is reviewed
as the twin's diff. ``twins`` rewrites every twin from its notebook (only those that differ; idempotent).
To edit the text instead, change the ``.md`` and run ``jupytext --sync`` on it (or open it in JupyterLab,
which saves both files), then re-execute the notebook (scripts/run_notebooks.py --in-place).

Usage:
  python scripts/notebook_tools.py stamp     # re-stamp badges and set-up cells from pyproject's URL
  python scripts/notebook_tools.py check     # exit 1 if any notebook lacks a consistent header
  python scripts/notebook_tools.py twins     # write each notebook's text twin where it differs
  python scripts/notebook_tools.py twins --check   # exit 1 (writing nothing) if a twin is missing or stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = ("notebooks", "labs")
SETUP_TAG = "colab-setup"
BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"


#: A tqdm bar as text ("train:  58%|#####8    | 175/300 [00:37<00:27, 4.6it/s, loss=4.2]"): what a headless run
#: of a notebook stores for every refresh. Committed outputs keep the tables the cells print, not these.
PROGRESS_BAR = re.compile(
    r"(?:[^\r\n|]*: *)?\d+%\|[^|\r\n]*\| *[\d.]+[kMG]?/[\d.]+[kMG]? \[[^\]\r\n]*\]"
)
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def clean_outputs(nb) -> int:
    """Drop progress-bar text from ``nb``'s stream outputs (the lines they leave, empty stream outputs) and
    widget state that no output shows any more; returns how many stream outputs changed or went."""
    changed = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        if not any(o.get("output_type") == "stream" and PROGRESS_BAR.search(o.get("text", "")) for o in cell.outputs):
            continue
        merged = []  # a bar's refreshes and the newline it ends with arrive as separate stream outputs
        for out in cell.outputs:
            if merged and out.get("output_type") == "stream" and merged[-1].get("output_type") == "stream" \
                    and merged[-1].get("name") == out.get("name"):
                merged[-1]["text"] += out["text"]
                changed += 1
            else:
                merged.append(out)
        kept = []
        for out in merged:
            if out.get("output_type") == "stream" and PROGRESS_BAR.search(out.get("text", "")):
                lines = out["text"].splitlines(keepends=True)
                cleaned = [PROGRESS_BAR.sub("", line).replace("\r", "") for line in lines]
                # a line that held only bars goes; one the cell printed (blank ones too) stays
                text = "".join(c for c, line in zip(cleaned, lines) if c.strip() or not PROGRESS_BAR.search(line))
                changed += 1
                if not text:
                    continue
                out["text"] = text
            kept.append(out)
        cell["outputs"] = kept
    shows_widgets = any(_WIDGET_VIEW in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    if "widgets" in nb.metadata and not shows_widgets:
        del nb.metadata["widgets"]
    return changed


def repo_url() -> str:
    """The repository URL: the one place it lives is pyproject.toml's [project.urls] Repository."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["project"]["urls"]["Repository"].rstrip("/")


def colab_link(rel_path: str, url: str | None = None) -> str:
    url = url or repo_url()
    gh = url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{gh}/blob/main/{rel_path}"


def badge_markdown(rel_path: str, url: str | None = None) -> str:
    return f"[![Open In Colab]({BADGE_IMG})]({colab_link(rel_path, url)})"


SETUP_TEMPLATE = '''\
# Colab set-up: does nothing outside Google Colab. On Colab it fetches the course and installs only what
# Colab lacks or has too old (Colab keeps its own torch; no runtime restart needed).
import importlib.util, os, subprocess, sys
COURSE_REPO = "{url}"
if "google.colab" in sys.modules:
    root = os.environ.get("COURSE_CLONE_DIR", "/content/llm-pretraining-course")
    if not os.path.isdir(os.path.join(root, "utils")):
        subprocess.run(["git", "clone", "-q", "--depth", "1", os.environ.get("COURSE_REPO_URL", COURSE_REPO), root], check=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", *os.environ.get("COURSE_PIP_ARGS", "").split()]
    if subprocess.run([*pip, "-e", root]).returncode:  # pip keeps what meets pyproject.toml's floors, else
        subprocess.run([*pip, "--no-deps", "-e", root], check=True)  # the course alone: utils says what is old
    missing = [p for p in ("bitsandbytes", "gguf") if importlib.util.find_spec(p) is None]
    if missing:
        subprocess.run([*pip, *missing], check=True)
    sys.path.insert(0, root)
    os.chdir(os.path.join(root, "{folder}"))
elif importlib.util.find_spec("utils") is None:  # opened outside `make lab`: use the checkout
    sys.path.insert(0, os.path.abspath("{up}"))'''


def setup_source(folder: str, url: str | None = None) -> str:
    up = "/".join([".."] * len(Path(folder).parts))  # from the notebook's folder back to the repository root
    return SETUP_TEMPLATE.format(url=url or repo_url(), folder=folder, up=up)


def all_notebooks() -> list[Path]:
    out = []
    for d in NOTEBOOK_DIRS:
        out += sorted(p for p in (ROOT / d).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    return out


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def header_problems(nb, rel_path: str, url: str | None = None) -> list[str]:
    """What is wrong with a notebook's header (empty when the badge and set-up cell are consistent)."""
    probs = []
    cells = nb["cells"]
    if not cells or cells[0]["cell_type"] != "markdown":
        return ["first cell must be a markdown title with the Colab badge"]
    if badge_markdown(rel_path, url) not in _src(cells[0]):
        probs.append(f"first cell lacks the badge {badge_markdown(rel_path, url)}")
    setup = [c for c in cells if SETUP_TAG in c.get("metadata", {}).get("tags", [])]
    if len(setup) != 1:
        probs.append(f"needs exactly one code cell tagged '{SETUP_TAG}', found {len(setup)}")
    else:
        if _src(setup[0]) != setup_source(str(Path(rel_path).parent), url):
            probs.append("the Colab set-up cell differs from the template (run `make badges`)")
        if cells.index(setup[0]) > 3:
            probs.append("the Colab set-up cell must come before the imports (within the first 4 cells)")
    kernelspec = nb.get("metadata", {}).get("kernelspec", {})
    if kernelspec.get("name") != "python3":
        probs.append("kernelspec name must be 'python3'")
    if kernelspec.get("display_name") != "Python 3 (ipykernel)":
        probs.append("kernelspec display_name must be 'Python 3 (ipykernel)' (JupyterLab rewrites others on open)")
    return probs


def stamp(url: str | None = None) -> list[Path]:
    """Rewrite every notebook's badge and set-up cell from the repository URL. Returns changed files."""
    import nbformat

    url = url or repo_url()
    changed = []
    for path in all_notebooks():
        rel = path.relative_to(ROOT).as_posix()
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        first = nb.cells[0]
        pat = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
        if pat.search(first.source):
            first.source = pat.sub(badge_markdown(rel, url), first.source)
        for c in nb.cells:
            if SETUP_TAG in c.get("metadata", {}).get("tags", []):
                c.source = setup_source(str(Path(rel).parent), url)
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            changed.append(path)
    return changed


# ---- building notebooks from cells (used by authors; the .ipynb stays the source of truth) ----
def md(text: str):
    import nbformat

    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, check: bool = False, tags=()):
    """A code cell; ``check=True`` prefixes ``# NBVAL_CHECK_OUTPUT`` (deterministic output, compared)."""
    import nbformat

    src = text.strip("\n")
    if check:
        src = "# NBVAL_CHECK_OUTPUT\n" + src
    cell = nbformat.v4.new_code_cell(src)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def header(rel_path: str, title: str, intro: str, goals: list[str], needs_table: str):
    """The standard first cells: title + badge + intro, goals + needs table, Colab set-up cell."""
    folder = str(Path(rel_path).parent)
    first = md(f"# {title}\n\n{badge_markdown(rel_path)}\n\n{intro.strip()}")
    goals_md = "## Learning goals\n\n" + "\n".join(f"- {g}" for g in goals) + "\n\n" + needs_table.strip()
    return [first, md(goals_md), code(setup_source(folder), tags=(SETUP_TAG,))]


def write_notebook(path, cells) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    # ipykernel's own display name: JupyterLab rewrites any other one on open, marking the notebook modified
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, str(path))


# ---- text twins (jupytext) ----
TWIN_SUFFIX = ".md"


def twin_path(notebook: Path) -> Path:
    """The text twin of a notebook: the same name with ``.md``, beside it."""
    return Path(notebook).with_suffix(TWIN_SUFFIX)


def twin_text(notebook: Path, content: str | None = None) -> str:
    """The twin's text as jupytext writes it for ``notebook`` with the repository's ``jupytext.toml``
    (``content``: the notebook's JSON to use instead of the file, e.g. another git revision's)."""
    import jupytext
    from jupytext.config import load_jupytext_config

    fmt = {"extension": TWIN_SUFFIX, "format_name": "myst"}
    load_jupytext_config(str(notebook)).set_default_format_options(fmt)
    nb = jupytext.read(notebook) if content is None else jupytext.reads(content, fmt="ipynb")
    return jupytext.writes(nb, fmt=fmt)


def read_twin_cells(twin: Path) -> list[tuple[str, str]]:
    """(cell type, source) of every cell of a text twin, as jupytext parses it back into a notebook."""
    import jupytext

    return [(c.cell_type, c.source) for c in jupytext.read(twin, fmt="md:myst").cells]


def notebook_cells(notebook: Path) -> list[tuple[str, str]]:
    import nbformat

    return [(c.cell_type, c.source) for c in nbformat.read(notebook, as_version=4).cells]


def orphan_twins() -> list[Path]:
    """Twins (a ``.md`` with a jupytext header) whose notebook is gone: renamed or deleted notebooks."""
    out = []
    for d in NOTEBOOK_DIRS:
        for md_file in sorted((ROOT / d).rglob("*" + TWIN_SUFFIX)):
            head = md_file.read_text(encoding="utf-8")[:200]
            if head.startswith("---\njupytext:") and not md_file.with_suffix(".ipynb").exists():
                out.append(md_file)
    return out


def sync_twins(check: bool = False) -> list[Path]:
    """Write the twin of every notebook whose twin is missing or differs, and delete orphan twins; with
    ``check`` write nothing. Returns the twins that were (or would be) written or deleted."""
    changed = []
    for nb in all_notebooks():
        twin, text = twin_path(nb), twin_text(nb)
        if not twin.exists() or twin.read_text(encoding="utf-8") != text:
            changed.append(twin)
            if not check:
                twin.write_text(text, encoding="utf-8")
    for twin in orphan_twins():
        changed.append(twin)
        if not check:
            twin.unlink()
    return changed


def main(argv: list[str]) -> int:
    if argv[:1] == ["stamp"]:
        for p in stamp():
            print("stamped", p.relative_to(ROOT))
        return 0
    if argv[:1] == ["check"]:
        import nbformat

        bad = 0
        for p in all_notebooks():
            rel = p.relative_to(ROOT).as_posix()
            for prob in header_problems(nbformat.read(p, as_version=4), rel):
                print(f"{rel}: {prob}")
                bad += 1
        return 1 if bad else 0
    if argv[:1] == ["twins"]:
        check = "--check" in argv[1:]
        changed = sync_twins(check=check)
        for p in changed:
            orphan = not p.with_suffix(".ipynb").exists()
            status = ("orphan" if orphan else "stale" if p.exists() else "missing") if check else (
                "removed" if orphan else "wrote")
            print(status, p.relative_to(ROOT))
        return 1 if check and changed else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
