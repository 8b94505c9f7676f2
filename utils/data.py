"""Text corpora that exist on every machine with Python, train/validation splits, statistics, token blocks.

Two corpora need no download, shipped with the course in ``utils/corpora/`` (a snapshot taken from
CPython 3.11.7, so every Python version and platform trains on the same bytes -- CPython's documentation
and standard library change between releases, and a corpus read live would give each interpreter a
different dataset, different tokenizers and different checked notebook outputs):

* ``"prose"``: the text of Python's own documentation (language reference topics) that CPython ships in
  ``pydoc_data.topics`` for ``help()``, in sorted topic order, duplicates removed -- English technical
  prose, about 0.46M characters.
* ``"code"``: Python standard-library source, the ``.py`` files under ``sysconfig.get_paths()["stdlib"]``
  in sorted path order (tests and vendored packages left out), about 10.7M characters; by default capped
  at :data:`CODE_MAX_CHARS` characters so tokenizer training stays fast.

Each snapshot is checked against its sha256 (:data:`CORPUS_SHA256`) when read: a damaged file is an error,
never a silently different dataset. ``scripts/make_corpora.py`` rebuilds them from the running Python
(:func:`live_documents`). Reading and writing the snapshots is :mod:`utils.corpus_snapshot`; its names are
re-exported here.

Documents are joined with :data:`DOCUMENT_SEPARATOR`, which contains GPT-2's end-of-text token: the course
tokenizer encodes it as one special token, so a model trained on the corpus sees where documents end.
"""

from __future__ import annotations

import functools
import random
import re
import warnings
from dataclasses import asdict, dataclass

from utils.corpus_snapshot import (  # noqa: F401 (re-exported: the corpora's names stay importable from here)
    CODE_EXCLUDED_DIRS,
    CORPORA,
    CORPUS_DIR,
    CORPUS_SHA256,
    SNAPSHOT_PYTHON,
    live_documents,
    snapshot_documents,
    stdlib_source_files,
    write_snapshot,
)
from utils.env import has_package, hub_reachable
from utils.validate import check_choice, check_fraction, check_int, fail

#: End-of-document token (GPT-2's spelling); also the tokenizer's EOS token.
END_OF_TEXT = "<|endoftext|>"
#: Joins documents inside a corpus string.
DOCUMENT_SEPARATOR = f"\n{END_OF_TEXT}\n"
#: Character budget of the "code" corpus: about 2 MB keeps tokenizer training to seconds.
CODE_MAX_CHARS = 2_000_000
#: Corpora that :func:`load_hub_corpus` knows: name -> (hub dataset id, configuration, text column).
HUB_CORPORA = {
    "wikitext": ("Salesforce/wikitext", "wikitext-2-raw-v1", "text"),
    "tinystories": ("roneneldan/TinyStories", None, "text"),
}


@functools.lru_cache(maxsize=8)
def _documents(name: str, max_chars: int | None) -> tuple[str, ...]:
    docs = list(snapshot_documents(name))
    if name == "code" and max_chars is None:
        max_chars = CODE_MAX_CHARS
    # whole documents only, in their fixed order: the prefix is the same on every run
    return tuple(docs if max_chars is None else _truncate(docs, max_chars))


def _truncate(documents: list[str], max_chars: int) -> list[str]:
    out, total = [], 0
    for doc in documents:
        cost = len(doc) + (len(DOCUMENT_SEPARATOR) if out else 0)
        if total + cost > max_chars:
            break
        out.append(doc)
        total += cost
    return out


def load_documents(name: str, max_chars: int | None = None) -> list[str]:
    """The documents of corpus ``name`` (a help topic or a source file each), in a fixed order.

    ``max_chars`` keeps whole documents while their joined length stays within it (default: all of
    "prose", :data:`CODE_MAX_CHARS` of "code").
    """
    check_choice("name", name, CORPORA)
    max_chars = check_int("max_chars", max_chars, minimum=1, allow_none=True)
    documents = list(_documents(name, max_chars))
    if not documents:  # shorter than the first document: an empty corpus would fail much later, obscurely
        first = len(_documents(name, None)[0])
        fail("max_chars", max_chars, f"None or at least {first} (the first document of {name!r}: no whole one fits)")
    return documents


def load_corpus(name: str, max_chars: int | None = None) -> str:
    """Corpus ``name`` ("prose" or "code") as one string, documents joined by :data:`DOCUMENT_SEPARATOR`."""
    return DOCUMENT_SEPARATOR.join(load_documents(name, max_chars))


def _check_text(text) -> None:
    if not isinstance(text, str):
        fail("text", text, "a string")


def split_documents(text: str) -> list[str]:
    """Cut ``text`` into documents at :data:`DOCUMENT_SEPARATOR`, or at blank lines when it has none."""
    _check_text(text)
    parts = text.split(DOCUMENT_SEPARATOR) if DOCUMENT_SEPARATOR in text else re.split(r"\n[ \t]*\n", text)
    return [p for p in parts if p.strip()]


def train_val_split(text: str, val_fraction: float = 0.1, seed: int = 0) -> tuple[str, str]:
    """Split ``text`` into (train, validation) on document boundaries (blank-line paragraphs when the
    text has no :data:`DOCUMENT_SEPARATOR`).

    Documents are shuffled with ``seed`` and moved to validation until it holds about ``val_fraction`` of
    the characters; each side keeps the original document order. Whole documents only, so no document
    is in both halves; the same arguments always give the same split.
    """
    val_fraction = check_fraction("val_fraction", val_fraction, low_open=True, high_open=True)
    seed = check_int("seed", seed, minimum=0)
    _check_text(text)
    separator = DOCUMENT_SEPARATOR if DOCUMENT_SEPARATOR in text else "\n\n"
    documents = split_documents(text)
    if len(documents) < 2:
        fail("text", f"<{len(documents)} document(s)>", "at least 2 documents or paragraphs (separated by "
             "DOCUMENT_SEPARATOR or a blank line)")
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    target = val_fraction * sum(len(d) for d in documents)
    val_ids, val_chars = set(), 0
    for i in order[:-1]:  # always leave at least one training document
        if val_chars >= target:
            break
        val_ids.add(i)
        val_chars += len(documents[i])
    train = separator.join(d for i, d in enumerate(documents) if i not in val_ids)
    val = separator.join(d for i, d in enumerate(documents) if i in val_ids)
    return train, val


@dataclass(frozen=True)
class CorpusStats:
    """Size of a text, and its token count when a tokenizer is given."""

    characters: int  # Unicode code points
    words: int  # whitespace-separated pieces
    lines: int  # newline-separated lines
    documents: int  # pieces between DOCUMENT_SEPARATORs (or blank-line paragraphs)
    tokens: int | None = None  # ids from the tokenizer (no special tokens added)
    tokens_per_word: float | None = None  # tokenizer "fertility": lower = the vocabulary fits the text

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_stats(text: str, tokenizer=None) -> CorpusStats:
    """Characters, words, lines, documents -- and tokens and tokens per word with a ``tokenizer``."""
    _check_text(text)
    words = len(text.split())
    tokens = None if tokenizer is None else len(encode_text(tokenizer, text))
    return CorpusStats(
        characters=len(text),
        words=words,
        lines=text.count("\n") + 1 if text else 0,
        documents=len(split_documents(text)) if text else 0,
        tokens=tokens,
        tokens_per_word=None if tokens is None or not words else tokens / words,
    )


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without added BOS/EOS, encoded document by document (a batch is faster
    than one megabyte-long call, and gives the same ids: the separator is a special token, which the
    tokenizer splits on before anything else).

    ``tokenizer``: a ``transformers`` fast tokenizer or a ``tokenizers.Tokenizer``.
    """
    _check_text(text)
    if not text:
        return []
    pieces = re.split(f"({re.escape(END_OF_TEXT)})", text)
    pieces = [p for p in pieces if p]
    if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
        encodings = tokenizer.encode_batch(pieces, add_special_tokens=False)
        batches = [e.ids for e in encodings]
    else:
        batches = tokenizer(pieces, add_special_tokens=False)["input_ids"]
    return [i for ids in batches for i in ids]


def tokenize_corpus(text: str, tokenizer):
    """``text`` as a 1-D ``torch.long`` tensor of token ids."""
    import torch

    return torch.tensor(encode_text(tokenizer, text), dtype=torch.long)


def chunk(ids, block_size: int):
    """Cut a 1-D tensor of ids into a ``(n_blocks, block_size)`` tensor of consecutive, non-overlapping
    blocks; the incomplete tail is dropped (a view, no copy)."""
    block_size = check_int("block_size", block_size, minimum=1)
    if not hasattr(ids, "dim") or ids.dim() != 1:
        got = tuple(ids.shape) if hasattr(ids, "shape") else type(ids).__name__
        fail("ids", got, "a 1-D tensor of token ids")
    n_blocks = ids.numel() // block_size
    if n_blocks == 0:
        fail("block_size", block_size, f"1..{ids.numel()} (the number of ids given)")
    return ids[: n_blocks * block_size].view(n_blocks, block_size)


class TokenDataset:
    """Fixed-length blocks of token ids for CLM/MLM/span-corruption batches (map-style: works with a
    ``torch.utils.data.DataLoader``).

    ``TokenDataset(text, tokenizer, block_size=128)`` tokenizes once; ``ds[i]`` is a LongTensor of
    ``block_size`` ids. Pass ``ids=`` (a 1-D LongTensor) instead of text to reuse a tokenization.
    """

    def __init__(self, text: str | None = None, tokenizer=None, block_size: int = 128, ids=None):
        if ids is None:
            if text is None or tokenizer is None:
                fail("ids", ids, "a 1-D LongTensor, or None with both text and tokenizer given")
            ids = tokenize_corpus(text, tokenizer)
        self.ids = ids
        self.block_size = block_size
        self.blocks = chunk(ids, block_size)

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, index):
        return self.blocks[index]

    def __repr__(self) -> str:
        return f"TokenDataset({len(self)} blocks x {self.block_size} tokens, {self.ids.numel():,} ids)"


class CorpusFallbackWarning(UserWarning):
    """:func:`load_hub_corpus` could not reach the hub and used a local corpus instead."""


def load_hub_corpus(
    name: str = "wikitext",
    split: str = "train",
    max_chars: int | None = 2_000_000,
    fallback: str = "prose",
) -> str:
    """A corpus from the Hugging Face Hub via the ``datasets`` library, or the local ``fallback`` corpus.

    Falls back, with a :class:`CorpusFallbackWarning` saying why, when ``datasets`` is not installed, the
    hub is unreachable or ``HF_HUB_OFFLINE=1`` is set, or the download fails. Non-empty rows are joined
    with newlines, up to ``max_chars`` characters.
    """
    check_choice("name", name, HUB_CORPORA)
    check_choice("fallback", fallback, CORPORA)
    max_chars = check_int("max_chars", max_chars, minimum=1, allow_none=True)
    reason = None
    if not has_package("datasets"):
        reason = "the 'datasets' package is not installed (pip install datasets)"
    elif not hub_reachable():
        reason = "the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE=1 is set)"
    else:
        repo, config, column = HUB_CORPORA[name]
        try:
            import datasets

            rows = datasets.load_dataset(repo, config, split=split)[column]
            text, total = [], 0
            for row in rows:
                if row.strip():
                    text.append(row)
                    total += len(row) + 1
                    if max_chars is not None and total >= max_chars:
                        break
            joined = "\n".join(text)
            return joined[:max_chars] if max_chars is not None else joined
        except Exception as exc:  # network errors, missing split, ...: the local corpus still works
            reason = f"loading {repo!r} failed ({type(exc).__name__}: {exc})"
    warnings.warn(
        f"load_hub_corpus({name!r}): {reason}; using the local {fallback!r} corpus instead.",
        CorpusFallbackWarning,
        stacklevel=2,
    )
    return load_corpus(fallback, max_chars=max_chars)
