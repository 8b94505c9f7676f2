"""Rebuild the course's two offline corpora (utils/corpora/*.json.gz) from the running CPython.

The course trains on a snapshot, not on the running interpreter's files: CPython's documentation and
standard library change between versions (and patch releases), so a corpus read live would give every
Python a different dataset, different tokenizers and different checked notebook outputs. The snapshot
was taken from CPython 3.11.7. Rebuilding it changes every figure that depends on the corpora: re-execute
the notebooks afterwards.

    python scripts/make_corpora.py            # writes utils/corpora/prose.json.gz and code.json.gz
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.corpus_snapshot import live_documents, write_snapshot  # noqa: E402

if __name__ == "__main__":
    for name in ("prose", "code"):
        path, digest = write_snapshot(name, live_documents(name))
        print(f"{path.relative_to(ROOT)}: sha256 {digest} (Python {sys.version.split()[0]})")
