"""Domain adaptation: how well a tokenizer fits a domain, and data mixtures for continued pre-training.

* :func:`fertility` -- tokens per word and per character of a text under a tokenizer (lower = the
  vocabulary fits the text better; the same text costs fewer tokens, so less compute and more context).
* :func:`word_splits` / :func:`worst_split_words` -- how many tokens each word takes *in context* (counted
  from the tokenizer's character offsets, so a word after "(" or "." is counted as it is really encoded),
  and the words a tokenizer splits worst, or that cost the most extra tokens in a text.
* :class:`MixtureBatches` -- one batch source that mixes several :class:`utils.batching.TokenBatches` streams
  (say 51% domain, 49% general data, as BloombergGPT did) with the stated ratio exactly in expectation,
  every batch within one sequence of it, and deterministic per seed (batch ``i`` depends only on the seed
  and ``i``, so ``train()`` can resume it and hold out batches by index).
* :func:`freeze_all_but_last` -- continued pre-training of a large model on a small machine: train only the
  last few transformer blocks (and the final norm), keep the rest frozen.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from utils.batching import IndexedBatches
from utils.data import DOCUMENT_SEPARATOR
from utils.validate import check_choice, check_int, check_number

#: What counts as a word for :func:`word_splits`: an English word or a Python identifier.
WORD_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Orders accepted by :func:`worst_split_words`.
RANKINGS = ("tokens", "cost")


@dataclass(frozen=True)
class Fertility:
    """Size of a text in characters, words and tokens (document separators left out)."""

    characters: int  # Unicode code points
    words: int  # whitespace-separated pieces (the definition of utils.data.corpus_stats)
    tokens: int  # ids from the tokenizer, no special tokens added

    @property
    def tokens_per_word(self) -> float:
        """Fertility per word: 1.0 would mean every word is one token."""
        return self.tokens / self.words

    @property
    def tokens_per_char(self) -> float:
        """Fertility per character: comparable across texts whose "words" differ (code vs prose)."""
        return self.tokens / self.characters

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_word": self.tokens_per_word, "tokens_per_char": self.tokens_per_char}


def _check_text(text) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    # only at the separator: blank lines inside a document are part of its text (and of its token count)
    documents = [d for d in text.split(DOCUMENT_SEPARATOR) if d.strip()]
    if not documents:
        raise ValueError("text is empty (or only whitespace); pass some text to measure")
    return documents


def _encode(tokenizer, documents: list[str], offsets: bool):
    if not callable(tokenizer):
        raise TypeError(
            f"tokenizer must be a transformers tokenizer (callable), got {type(tokenizer).__name__}"
        )
    return tokenizer(documents, add_special_tokens=False, return_offsets_mapping=offsets)


def fertility(tokenizer, text: str) -> Fertility:
    """Characters, words and tokens of ``text`` under ``tokenizer`` (a ``transformers`` tokenizer).

    The text is cut into documents at :data:`utils.data.DOCUMENT_SEPARATOR` first and the separators are
    not counted, so tokenizers that treat ``<|endoftext|>`` differently are compared on the same text.
    """
    documents = _check_text(text)
    ids = _encode(tokenizer, documents, offsets=False)["input_ids"]
    return Fertility(
        characters=sum(len(d) for d in documents),
        words=sum(len(d.split()) for d in documents),
        tokens=sum(len(x) for x in ids),
    )


@dataclass(frozen=True)
class WordSplit:
    """How a tokenizer cuts one word, over all its occurrences in a text."""

    word: str  # the word (WORD_PATTERN)
    count: int  # occurrences in the text
    tokens: float  # mean tokens per occurrence, counted in context (tokens overlapping the word)
    pieces: tuple[str, ...]  # the word cut at its token boundaries, at its first occurrence

    @property
    def extra_tokens(self) -> float:
        """Tokens this word costs in the text beyond one per occurrence: count * (tokens - 1)."""
        return self.count * (self.tokens - 1)


def word_splits(tokenizer, text: str, min_count: int = 1) -> dict[str, WordSplit]:
    """Every word of ``text`` (English words and identifiers, :data:`WORD_PATTERN`) seen at least
    ``min_count`` times, with its mean number of tokens in context and its pieces.

    A token counts for a word when their character spans overlap (from the tokenizer's offset mapping):
    " reads" after a space is one token for "reads"; "isinstance" cut as "is|inst|ance" is three.
    """
    min_count = check_int("min_count", min_count, minimum=1)
    documents = _check_text(text)
    encoded = _encode(tokenizer, documents, offsets=True)
    totals: dict[str, list] = {}  # word -> [occurrences, tokens summed, pieces of the first occurrence]
    for doc, spans in zip(documents, encoded["offset_mapping"]):
        starts = [s for s, _ in spans]
        ends = [e for _, e in spans]
        for match in WORD_PATTERN.finditer(doc):
            s, e = match.span()
            i = bisect.bisect_right(ends, s)  # first token ending after the word starts
            j = i
            while j < len(spans) and starts[j] < e:
                j += 1
            entry = totals.get(match.group())
            if entry is None:
                pieces = tuple(doc[max(a, s) : min(b, e)] for a, b in spans[i:j])
                totals[match.group()] = [1, j - i, pieces]
            else:
                entry[0] += 1
                entry[1] += j - i
    return {
        w: WordSplit(word=w, count=n, tokens=t / n, pieces=p)
        for w, (n, t, p) in totals.items()
        if n >= min_count
    }


def worst_split_words(
    tokenizer, text: str, k: int = 10, min_count: int = 3, by: str = "tokens"
) -> list[WordSplit]:
    """The ``k`` words of ``text`` (seen at least ``min_count`` times) that ``tokenizer`` splits worst.

    ``by="tokens"``: most tokens per occurrence (long, rare-to-this-tokenizer words);
    ``by="cost"``: most extra tokens in this text, count * (tokens - 1) -- the frequent words the
    vocabulary lacks, which is what a domain tokenizer fixes. Ties go to the more frequent word, then
    alphabetical order, so the list is deterministic.
    """
    check_choice("by", by, RANKINGS)
    k = check_int("k", k, minimum=1)
    splits = word_splits(tokenizer, text, min_count=min_count).values()
    key = (lambda s: (-s.tokens, -s.count, s.word)) if by == "tokens" else (
        lambda s: (-s.extra_tokens, -s.count, s.word)
    )
    return sorted(splits, key=key)[:k]


# --------------------------------------------------------------------------------------------- mixture


def mixture_counts(weights: Sequence[float], n: int, u: float) -> list[int]:
    """How many of ``n`` rows each source gets for one offset ``u`` in [0, 1) (systematic sampling).

    Source k gets ``floor(C_k * n + u) - floor(C_{k-1} * n + u)`` rows, C_k the cumulative weights. With
    ``u`` uniform that is ``w_k * n`` rows exactly in expectation (E[floor(x + u)] = x), and always
    ``floor(w_k * n)`` or ``ceil(w_k * n)``; the counts sum to ``n``.
    """
    u = check_number("u", u, minimum=0, maximum=1, max_open=True)
    counts, cumulative, previous = [], 0.0, 0
    for i, w in enumerate(weights):
        cumulative += w
        edge = n if i == len(weights) - 1 else min(n, math.floor(cumulative * n + u))
        counts.append(edge - previous)
        previous = edge
    return counts


def _stream_seed(seed: int, index: int) -> int:
    """A 64-bit seed for batch ``index`` of stream ``seed``, mixed by a hash.

    Not ``seed * 2**32 + index``: torch's CPU generator (mt19937) keeps only the low 32 bits of its seed,
    so that formula gives every seed the same stream.
    """
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _normalised(weights, n_sources: int) -> tuple[float, ...]:
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a sequence of numbers, got {type(weights).__name__}")
    if len(weights) != n_sources:
        raise ValueError(f"weights={list(weights)!r} has {len(weights)} entries; accepted: one per source "
                         f"({n_sources})")
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
               for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights={list(weights)!r} is not valid; accepted: finite numbers >= 0, not all 0")
    total = float(sum(weights))
    return tuple(w / total for w in weights)


class MixtureBatches(IndexedBatches):
    """Batches whose rows come from several batch sources in a stated ratio (a data mixture).

    ``MixtureBatches([code_batches, prose_batches], weights=[0.51, 0.49], seed=0)``: the sources are
    :class:`utils.batching.TokenBatches` (anything with ``batch(index)`` and ``batch_size``) making batches of
    the same shape; weights are normalised to sum to one. For batch ``i`` a generator seeded with
    (``seed``, ``i``) draws one offset ``u`` and a permutation: :func:`mixture_counts` decides how many rows
    each source gives (``weights[k] * batch_size`` exactly in expectation, never more than one row off),
    the permutation where they go, and each source's rows are taken from its own batch ``i``. So batch
    ``i`` depends only on the seed and ``i``: random access, resumable like ``TokenBatches``, and the
    same on every machine. Give the sources different seeds (their batch ``i`` is used together).
    """

    def __init__(self, sources: Sequence, weights: Sequence[float], *, seed: int = 0):
        if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence) or not sources:
            raise ValueError("sources must be a non-empty list of batch sources (e.g. TokenBatches)")
        for i, s in enumerate(sources):
            if not hasattr(s, "batch") or not hasattr(s, "batch_size"):
                raise TypeError(f"sources[{i}] is a {type(s).__name__}; accepted: TokenBatches-like objects "
                                "with batch(index) and batch_size")
        seed = check_int("seed", seed, minimum=0)
        self.sources, self.weights, self.seed = list(sources), _normalised(weights, len(sources)), seed
        self.batch_size = sources[0].batch_size
        first = sources[0].batch(0)
        shape = {k: tuple(v.shape) for k, v in first.items()}
        for i, s in enumerate(self.sources[1:], start=1):
            other = {k: tuple(v.shape) for k, v in s.batch(0).items()}
            if other != shape:
                raise ValueError(f"sources[{i}] makes batches shaped {other}, sources[0] {shape}; "
                                 "accepted: the same batch_size, seq_len and objective for every source")
        self.position = 0  # batches drawn so far = index of the next one

    def row_sources(self, index: int):
        """For batch ``index``: the source of each row, a LongTensor of ``batch_size`` source indices."""
        import torch

        g = torch.Generator().manual_seed(_stream_seed(self.seed, index))
        u = torch.rand((), generator=g, dtype=torch.float64).item()
        counts = mixture_counts(self.weights, self.batch_size, u)
        labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        return labels[torch.randperm(self.batch_size, generator=g)]

    def batch(self, index: int) -> dict:
        """Batch number ``index`` (does not move the position)."""
        import torch

        rows = self.row_sources(index)
        out = None
        for k, source in enumerate(self.sources):
            take = rows == k
            if not take.any():
                continue
            part = source.batch(index)
            if out is None:
                out = {name: torch.empty_like(t) for name, t in part.items()}
            for name, t in part.items():
                out[name][take] = t[take]
        return out


    def __repr__(self) -> str:
        ratio = "/".join(f"{w:.0%}" for w in self.weights)
        return f"MixtureBatches({len(self.sources)} sources, {ratio}, batch_size={self.batch_size}, seed={self.seed})"


# -------------------------------------------------------------------------------------- partial training


def _blocks(model):
    """The transformer blocks (an nn.ModuleList) and the final norm of a GPT-2 or Llama-style model."""
    base = getattr(model, "base_model", model)
    for blocks_name, norm_name in (("layers", "norm"), ("h", "ln_f")):
        blocks = getattr(base, blocks_name, None)
        if blocks is not None:
            return blocks, getattr(base, norm_name, None)
    raise TypeError(f"{type(model).__name__} has no .layers or .h block list; accepted: a GPT-2 or "
                    "Llama-style causal LM from transformers")


def freeze_all_but_last(model, n_blocks: int) -> int:
    """Freeze every parameter except the last ``n_blocks`` transformer blocks and the final norm.

    The embeddings stay frozen (SmolLM2 and GPT-2 tie them to the output layer, so training them would
    also move the output); backward then stops at the first trainable block, which is what saves time.
    Returns the number of trainable parameters.
    """
    blocks, norm = _blocks(model)
    n_blocks = check_int("n_blocks", n_blocks, minimum=0, maximum=len(blocks))
    for p in model.parameters():
        p.requires_grad_(False)
    keep = list(blocks[len(blocks) - n_blocks :]) + ([norm] if norm is not None and n_blocks else [])
    for module in keep:
        for p in module.parameters():
            p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
