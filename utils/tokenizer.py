"""Train the course's byte-level BPE tokenizer (as GPT-2 does) and cache it, so notebooks reuse one.

Byte-level BPE starts from the 256 byte values, so any text encodes without an unknown token and
``decode(encode(text)) == text`` exactly: there is no normaliser, no added prefix space, and
``clean_up_tokenization_spaces=False``.

Special tokens, with fixed ids at the start of the vocabulary (so ``len(tokenizer) == vocab_size``):

====================  =====  ======================================================
token                 id     used by
====================  =====  ======================================================
``<pad>``             0      padding batches to one length (``tokenizer.pad_token``)
``<|endoftext|>``     1      end of a document, GPT-2's spelling (``eos_token``, ``bos_token``)
``<mask>``            2      masked language modelling, BERT's [MASK] (``mask_token``)
``<extra_id_0>``..    3..102 T5 span-corruption sentinels (``extra_special_tokens``)
``<extra_id_99>``
====================  =====  ======================================================

T5's own tokenizer puts its sentinels at the *end* of the vocabulary in reverse order; here they come
first in ascending order, which changes nothing about what they do. (transformers 5 lists the sentinels
in ``tokenizer.extra_special_tokens``; 4.x called that ``additional_special_tokens``.)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from utils.data import CORPORA, END_OF_TEXT, load_corpus
from utils.env import cache_dir
from utils.io import load_cached, store_cached
from utils.validate import check_bool, check_choice, check_int

PAD_TOKEN = "<pad>"
EOS_TOKEN = END_OF_TEXT
MASK_TOKEN = "<mask>"
#: T5's sentinel count.
N_SENTINELS = 100
SENTINEL_TOKENS = tuple(f"<extra_id_{i}>" for i in range(N_SENTINELS))
#: In id order: <pad> = 0, <|endoftext|> = 1, <mask> = 2, <extra_id_0> = 3, ...
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, MASK_TOKEN, *SENTINEL_TOKENS)
DEFAULT_VOCAB_SIZE = 4096
#: Bumped when the recipe below changes, so stale cached tokenizers are not reused.
RECIPE_VERSION = 1
#: 256 byte symbols + the special tokens: the smallest vocabulary that can still merge anything.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS) + 1
#: What a cached tokenizer folder must hold (checked, with sizes and hashes, on every load).
CACHE_FILES = ("tokenizer.json", "tokenizer_config.json")


def sentinel_token(i: int) -> str:
    """The ``i``-th span-corruption sentinel, ``<extra_id_i>``."""
    return SENTINEL_TOKENS[check_int("i", i, minimum=0, maximum=N_SENTINELS - 1)]


def _training_text(text_or_corpus_name) -> str | list[str]:
    if isinstance(text_or_corpus_name, str) and text_or_corpus_name in CORPORA:
        return load_corpus(text_or_corpus_name)
    if isinstance(text_or_corpus_name, str):
        # one short word is a mistyped corpus name ("Prose"), not a text worth a tokenizer
        if not text_or_corpus_name.strip() or (
            len(text_or_corpus_name) <= 32 and not any(c.isspace() for c in text_or_corpus_name)
        ):
            raise ValueError(
                f"text_or_corpus_name={text_or_corpus_name!r} is not a corpus name; accepted: one of {CORPORA} "
                "(lower case), a text to train on (several words at least) or a list of texts"
            )
        return text_or_corpus_name
    if isinstance(text_or_corpus_name, (list, tuple)) and all(
        isinstance(t, str) for t in text_or_corpus_name
    ):
        return list(text_or_corpus_name)
    raise ValueError(
        f"text_or_corpus_name must be a corpus name {CORPORA}, a text string or a list of strings, "
        f"got {type(text_or_corpus_name).__name__}"
    )


def _documents_for_training(text: str | list[str]) -> list[str]:
    # The trainer would learn "<|endoftext|>" as ordinary bytes: cut it out, so merges stay inside documents.
    texts = [text] if isinstance(text, str) else text
    return [piece for t in texts for piece in t.split(END_OF_TEXT) if piece]


def train_tokenizer(
    text_or_corpus_name="prose",
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    min_frequency: int = 2,
    show_progress: bool = False,
):
    """Train a byte-level BPE tokenizer on a corpus name ("prose", "code"), a text or a list of texts.

    Returns a ``transformers.PreTrainedTokenizerFast`` with ``pad_token``, ``eos_token`` (= ``bos_token``),
    ``mask_token`` and 100 sentinels set; ``len(tokenizer) == vocab_size`` (fewer if the text is too short
    to learn that many merges). About a second on the prose corpus with two CPU cores.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    vocab_size = check_int("vocab_size", vocab_size, minimum=MIN_VOCAB_SIZE)  # bytes + special tokens + 1
    min_frequency = check_int("min_frequency", min_frequency, minimum=1)
    show_progress = check_bool("show_progress", show_progress)
    documents = _documents_for_training(_training_text(text_or_corpus_name))
    tokenizer = Tokenizer(models.BPE())
    # GPT-2's pre-tokenizer: split on its regex (words, numbers, punctuation, spaces), then map bytes to
    # printable characters; no prefix space so that decoding gives back exactly the input.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even unseen ones
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer, length=len(documents))
    return wrap(tokenizer)


def wrap(tokenizer):
    """Wrap a ``tokenizers.Tokenizer`` with the course's special tokens as a PreTrainedTokenizerFast."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,  # GPT-2 convention: one token marks both ends of a document
        mask_token=MASK_TOKEN,
        additional_special_tokens=list(SENTINEL_TOKENS),
        clean_up_tokenization_spaces=False,  # would delete the space in "x ," and break exact round trips
    )
    return fast


def load_tokenizer(path):
    """Load a tokenizer saved by ``tokenizer.save_pretrained(path)`` (no network)."""
    from transformers import PreTrainedTokenizerFast

    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path={path!r} is not valid; accepted: a folder path (str or pathlib.Path)")
    path = Path(path).expanduser()
    if not (path / "tokenizer.json").is_file():
        raise ValueError(
            f"path={str(path)!r} holds no tokenizer.json; expected a folder from save_pretrained"
        )
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    except Exception as exc:  # a truncated JSON file, a damaged vocabulary, ...
        raise ValueError(f"path={str(path)!r}: the tokenizer files cannot be read ({type(exc).__name__}: {exc})") from None


def cache_key(text: str, vocab_size: int, min_frequency: int = 2) -> str:
    """Hash of everything the trained tokenizer depends on: corpus text, parameters, recipe, library."""
    import tokenizers

    h = hashlib.sha256(text.encode("utf-8"))
    h.update(json.dumps([vocab_size, min_frequency, RECIPE_VERSION, tokenizers.__version__]).encode())
    return h.hexdigest()[:16]


def get_tokenizer(corpus: str = "prose", vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2):
    """The course tokenizer for ``corpus``: trained once, then loaded from the course cache.

    Cached under ``cache_dir("tokenizers", f"{corpus}-{vocab_size}-{hash}")`` where the hash covers the
    corpus text (which depends on the Python version), the parameters and the ``tokenizers`` version.
    """
    check_choice("corpus", corpus, CORPORA)
    vocab_size = check_int("vocab_size", vocab_size, minimum=MIN_VOCAB_SIZE)
    min_frequency = check_int("min_frequency", min_frequency, minimum=1)
    text = load_corpus(corpus)
    folder = cache_dir("tokenizers") / f"{corpus}-{vocab_size}-{cache_key(text, vocab_size, min_frequency)}"
    cached = load_cached(folder, load_tokenizer, required=CACHE_FILES)  # None: absent, or damaged (warned)
    if cached is not None:
        return cached
    tokenizer = train_tokenizer(text, vocab_size=vocab_size, min_frequency=min_frequency)
    store_cached(folder, tokenizer)  # a read-only cache: warned, the tokenizer is used from memory
    return tokenizer
