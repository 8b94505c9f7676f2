"""The three pre-training objectives as batch makers on token-id tensors, in one place.

* **CLM** (decoder-only, GPT) and **MLM** (encoder-only, BERT): :mod:`utils.clm_mlm`.
* **Span corruption** (encoder-decoder, T5): :mod:`utils.span_corruption`.
* :func:`make_batch` applies an objective by name; :func:`objective_ids` reads the special ids it needs from
  a tokenizer.

Every batch maker takes an integer tensor ``input_ids`` of shape ``(B, T)`` and returns a dict of tensors
ready for ``model(**batch)`` of a Hugging Face model. Randomness comes only from the ``torch.Generator``
passed in, so a batch is a pure function of (tokens, generator seed). Positions that carry no loss have
label :data:`IGNORE_INDEX` (-100), which every ``transformers`` loss skips.

:func:`lecture_examples` runs the same code on the lecture's sentence "The teacher teaches the student";
:func:`attention_masks` draws who attends to whom under each architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from utils.clm_mlm import (  # noqa: F401 (re-exported: the course imports them from utils.objectives)
    IGNORE_INDEX,
    check_token_ids,
    clm_batch,
    mlm_batch,
    mlm_corrupt,
    mlm_select,
    next_token_pairs,
)
from utils.span_corruption import (  # noqa: F401 (re-exported)
    random_spans_noise_mask,
    span_corrupt,
    span_corruption_batch,
    span_counts,
    span_uncorrupt,
)
from utils.validate import check_choice, check_int

#: Objective names accepted by :func:`make_batch`.
OBJECTIVES = ("clm", "mlm", "span")


def make_batch(
    objective: str, input_ids: torch.Tensor, *, generator: torch.Generator | None = None, **ids
) -> dict[str, torch.Tensor]:
    """Apply ``objective`` ("clm", "mlm" or "span") to windows ``(B, T)``; ``ids`` as the function needs.

    clm: ``pad_id`` (optional); mlm: ``mask_id``, ``vocab_size``, ``special_ids``, ``pad_id``;
    span: ``sentinel_ids``, ``pad_id``, ``eos_id``, ``noise_density``, ``mean_span_length``.
    """
    check_choice("objective", objective, OBJECTIVES)
    if objective == "clm":
        return clm_batch(input_ids, pad_id=ids.get("pad_id"))
    if objective == "mlm":
        for need in ("mask_id", "vocab_size"):
            if ids.get(need) is None:
                raise ValueError(f"objective='mlm' needs {need}=..., got None")
        return mlm_batch(input_ids, generator=generator, **ids)
    if not ids.get("sentinel_ids"):  # "span"
        raise ValueError("objective='span' needs sentinel_ids=[<extra_id_0>, <extra_id_1>, ...], got none")
    return span_corruption_batch(input_ids, generator=generator, **ids)


def objective_ids(objective: str, tokenizer) -> dict:
    """The special ids ``objective`` needs, read from a ``transformers`` tokenizer, for :func:`make_batch`.

    mlm: ``mask_id``, ``vocab_size`` (``len(tokenizer)``), ``special_ids`` (all special tokens: never
    selected nor drawn as random replacements), ``pad_id``; span: ``sentinel_ids`` (``<extra_id_0>``,
    ``<extra_id_1>``, ... as long as the tokenizer has them), ``pad_id``, ``eos_id``; clm: nothing.
    """
    check_choice("objective", objective, OBJECTIVES)
    if objective == "clm":
        return {}
    if objective == "mlm":
        if tokenizer.mask_token_id is None:
            raise ValueError(
                "objective='mlm' needs a tokenizer with a mask token (tokenizer.mask_token is None)"
            )
        return {
            "mask_id": tokenizer.mask_token_id,
            "vocab_size": len(tokenizer),
            "special_ids": sorted(set(tokenizer.all_special_ids)),
            "pad_id": tokenizer.pad_token_id,
        }
    vocab = tokenizer.get_vocab()
    sentinels: list[int] = []
    while f"<extra_id_{len(sentinels)}>" in vocab:
        sentinels.append(vocab[f"<extra_id_{len(sentinels)}>"])
    if not sentinels:
        raise ValueError(
            "objective='span' needs a tokenizer with sentinel tokens <extra_id_0>, <extra_id_1>, ..."
        )
    return {
        "sentinel_ids": sentinels,
        "pad_id": tokenizer.pad_token_id or 0,
        "eos_id": tokenizer.eos_token_id,
    }


# ------------------------------------------------------------------------- the lecture's picture


@dataclass(frozen=True)
class ObjectiveExample:
    """What a model sees and what it must predict, as words."""

    objective: str  # "mlm", "clm" or "span"
    architecture: str  # "encoder-only", "decoder-only" or "encoder-decoder"
    inputs: list[str]  # the tokens the model reads
    targets: list[str]  # what the loss asks it to produce


LECTURE_SENTENCE = "The teacher teaches the student"


def lecture_examples(
    sentence: str = LECTURE_SENTENCE,
    masked: int = 2,
    span: tuple[int, int] = (2, 4),
    context: int = 2,
    mask_token: str = "<MASK>",
    sentinels: Sequence[str] = ("<X>", "<Y>", "<Z>"),
) -> dict[str, ObjectiveExample]:
    """The lecture's example for each objective, produced by this module's own functions on word ids.

    Defaults reproduce the lecture: MLM masks word ``masked`` (input "The teacher <MASK> the student",
    target the whole sentence); CLM reads ``context`` words and predicts the next ("The teacher" ->
    "teaches"); span corruption hides words ``span[0]:span[1]`` ("The teacher <X> student" ->
    "<X> teaches the <Y>"; the lecture leaves out T5's closing sentinel ``<Y>``).
    """
    words = sentence.split()
    vocab = [*dict.fromkeys(words), mask_token, *sentinels]
    ids = torch.tensor([[vocab.index(w) for w in words]])  # (1, T)
    mask_id = vocab.index(mask_token)
    sentinel_ids = [vocab.index(s) for s in sentinels]

    selected = torch.zeros_like(ids, dtype=torch.bool)
    selected[0, masked] = True
    mlm = mlm_corrupt(
        ids, selected, mask_id=mask_id, vocab_size=len(vocab), mask_fraction=1.0, random_fraction=0.0
    )

    context_ids, next_ids = next_token_pairs(ids)

    noise = torch.zeros_like(ids, dtype=torch.bool)
    noise[0, span[0] : span[1]] = True
    t5 = span_corrupt(ids, noise, sentinel_ids)

    def to_words(row) -> list[str]:
        return [vocab[i] for i in row.tolist() if i != IGNORE_INDEX]

    return {
        "mlm": ObjectiveExample("mlm", "encoder-only", to_words(mlm["input_ids"][0]), words),
        "clm": ObjectiveExample(
            "clm", "decoder-only", to_words(context_ids[0, :context]), [vocab[int(next_ids[0, context - 1])]]
        ),
        "span": ObjectiveExample(
            "span", "encoder-decoder", to_words(t5["input_ids"][0]), to_words(t5["labels"][0])
        ),
    }


# ---------------------------------------------------------------------------------- attention masks


def attention_masks(n_enc: int = 6, n_dec: int = 4) -> dict[str, torch.Tensor]:
    """Who may attend to whom (rows = queries, columns = keys), True = allowed.

    ``"bidirectional"`` (encoder, MLM): ``(n_enc, n_enc)`` all True. ``"causal"`` (decoder, CLM):
    ``(n_dec, n_dec)`` lower triangle. ``"encoder-decoder"``: one ``(n_enc + n_dec)`` square -- encoder
    rows see the encoder, decoder rows see the whole encoder (cross-attention) and earlier decoder tokens.
    """
    n_enc, n_dec = check_int("n_enc", n_enc, minimum=1), check_int("n_dec", n_dec, minimum=1)
    bidirectional = torch.ones(n_enc, n_enc, dtype=torch.bool)
    causal = torch.ones(n_dec, n_dec, dtype=torch.bool).tril()
    combined = torch.zeros(n_enc + n_dec, n_enc + n_dec, dtype=torch.bool)
    combined[:n_enc, :n_enc] = True  # encoder self-attention
    combined[n_enc:, :n_enc] = True  # cross-attention
    combined[n_enc:, n_enc:] = causal  # decoder self-attention
    return {"bidirectional": bidirectional, "causal": causal, "encoder-decoder": combined}
