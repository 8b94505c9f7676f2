"""The two offline corpora as shipped with the course: a snapshot of CPython 3.11.7's help topics and standard
library in ``utils/corpora/`` (see :mod:`utils.data` for why a snapshot), how it is read (sha256-checked) and
how ``scripts/make_corpora.py`` rebuilds it from the running interpreter."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
import sysconfig
from pathlib import Path

from utils.validate import check_choice

#: The local corpora, by name.
CORPORA = ("prose", "code")
#: Standard-library folders left out of "code": tests, third-party packages, generated codec tables.
CODE_EXCLUDED_DIRS = ("test", "tests", "idle_test", "site-packages", "__pycache__", "encodings")


def _clean(text: str) -> str:
    """Strip trailing spaces on each line and surrounding blank lines (nothing else: code stays code)."""
    return re.sub(r"[ \t]+\n", "\n", text.replace("\r\n", "\n")).strip("\n")


#: Where the corpus snapshots live (package data), and the Python they were taken from.
CORPUS_DIR = Path(__file__).resolve().parent / "corpora"
SNAPSHOT_PYTHON = "3.11.7"
#: sha256 of each snapshot's JSON (the list of documents), as scripts/make_corpora.py printed it.
CORPUS_SHA256 = {
    "prose": "aa3b75fb7510dedb1f941d0e50b8fa6bc288a0fe64b5fd72c2215390364dfd41",
    "code": "4d8dfd953d61e0a43be6d29e2d85f992de3b203a201a6e96434b57c156f59912",
}


def _prose_documents() -> list[str]:
    from pydoc_data.topics import topics  # shipped with CPython for help('topic')

    documents = [_clean(topics[key]) for key in sorted(topics)]
    # A few topics are aliases with identical text; duplicates would leak across a train/val split.
    return list(dict.fromkeys(documents))


def stdlib_source_files() -> list[Path]:
    """The standard library's ``.py`` files in sorted relative-path order, tests and packages excluded.

    ``_sysconfigdata*`` is left out too: it records this machine's build paths, not code anyone wrote.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part in CODE_EXCLUDED_DIRS for part in rel.parts) or rel.name.startswith("_sysconfigdata"):
            continue
        files.append(rel)
    return [root / rel for rel in sorted(files, key=lambda p: p.as_posix())]


def live_documents(name: str) -> list[str]:
    """Corpus ``name``'s documents read from the running interpreter (what the snapshot is made from):
    every help topic, or every standard-library file (uncapped)."""
    check_choice("name", name, CORPORA)
    if name == "prose":
        return _prose_documents()
    texts = (_clean(path.read_text(encoding="utf-8", errors="replace")) for path in stdlib_source_files())
    return [text for text in texts if text]


def _snapshot_path(name: str) -> Path:
    return CORPUS_DIR / f"{name}.json.gz"


def write_snapshot(name: str, documents) -> tuple[Path, str]:
    """Write corpus ``name``'s snapshot (gzip with a fixed timestamp: the same documents give the same
    bytes); returns its path and the sha256 to record in :data:`CORPUS_SHA256`."""
    check_choice("name", name, CORPORA)
    raw = json.dumps(list(documents), ensure_ascii=False).encode("utf-8")
    path = _snapshot_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    return path, hashlib.sha256(raw).hexdigest()


@functools.lru_cache(maxsize=2)
def snapshot_documents(name: str) -> tuple[str, ...]:
    """Corpus ``name``'s documents from the snapshot shipped with the course, checked against its sha256."""
    check_choice("name", name, CORPORA)
    path = _snapshot_path(name)
    if not path.exists():
        raise FileNotFoundError(f"the {name!r} corpus snapshot utils/corpora/{path.name} is missing: reinstall "
                                "the course (git checkout utils/corpora) or rebuild it with scripts/make_corpora.py")
    raw = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CORPUS_SHA256[name]:
        raise ValueError(f"utils/corpora/{path.name} is damaged or was changed: sha256 {digest[:16]}..., expected "
                         f"{CORPUS_SHA256[name][:16]}...; restore it (git checkout utils/corpora) or, after "
                         "rebuilding it on purpose, record the new digest in utils.corpus_snapshot.CORPUS_SHA256")
    return tuple(json.loads(raw))
