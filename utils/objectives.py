"""The three pre-training objectives as batch makers on token-id tensors.

* **CLM** (decoder-only, GPT): predict each next token from the ones before it (:func:`clm_batch`).
* **MLM** (encoder-only, BERT): select 15% of the tokens; of those 80% -> mask, 10% -> a random token,
  10% unchanged; predict the originals at the selected positions only (:func:`mlm_batch`).
* **Span corruption** (encoder-decoder, T5): replace random spans (noise density 0.15, mean span length 3)
  by one sentinel each; the target lists each sentinel followed by the tokens it hid, closed by a final
  sentinel (:func:`span_corruption_batch`).

Every function takes an integer tensor ``input_ids`` of shape ``(B, T)`` and returns a dict of tensors ready
for ``model(**batch)`` of a Hugging Face model. Randomness comes only from the ``torch.Generator`` passed
in, so a batch is a pure function of (tokens, generator seed). Positions that carry no loss have label
:data:`IGNORE_INDEX` (-100), which every ``transformers`` loss skips.

:func:`lecture_examples` runs the same code on the lecture's sentence "The teacher teaches the student".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from utils.validate import check_choice, check_fraction, check_int, check_number

#: Label value that ``torch.nn.CrossEntropyLoss`` (and so every transformers model) ignores.
IGNORE_INDEX = -100
#: Objective names accepted by :func:`make_batch`.
OBJECTIVES = ("clm", "mlm", "span")


def check_token_ids(name: str, ids, dim: int = 2, vocab_size: int | None = None) -> torch.Tensor:
    """``ids`` as int64 (so a label -100 fits: in uint8 it would wrap to 156), checked to be a ``dim``-D
    integer tensor of ids >= 0 (and < ``vocab_size`` when given); a ValueError naming ``name`` otherwise."""
    shape = "(B, T)" if dim == 2 else f"{dim}-D"
    if (
        not isinstance(ids, torch.Tensor)
        or ids.dim() != dim
        or ids.is_floating_point()
        or ids.is_complex()
        or ids.dtype == torch.bool
    ):
        got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be an integer tensor of shape {shape} holding token ids; got {got}")
    if ids.numel():
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or (vocab_size is not None and high >= vocab_size):
            bad = low if low < 0 else high
            limit = f"0..{vocab_size - 1}" if vocab_size is not None else ">= 0"
            raise ValueError(f"{name} holds the id {bad}; accepted: token ids {limit}")
    return ids.long()


def _check_ids(input_ids: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    return check_token_ids("input_ids", input_ids, 2, vocab_size)


def _check_fraction(name: str, value: float, low_open: bool = False) -> float:
    return check_fraction(name, value, low_open=low_open)


def _check_id_list(name: str, ids, vocab_size: int | None = None) -> list[int]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence | torch.Tensor):
        raise ValueError(f"{name}={ids!r} is not valid; accepted: a sequence of token ids")
    maximum = None if vocab_size is None else vocab_size - 1
    return [check_int(name, i.item() if isinstance(i, torch.Tensor) else i, minimum=0, maximum=maximum) for i in ids]


# ----------------------------------------------------------------------------------------------- CLM


def clm_batch(input_ids: torch.Tensor, pad_id: int | None = None) -> dict[str, torch.Tensor]:
    """Causal language modelling: ``labels`` are a copy of ``input_ids`` (pads -> -100).

    The labels are **not** shifted here: every ``transformers`` causal LM shifts them inside its loss
    (logits at position t are scored against labels[t + 1]), so passing ``labels = input_ids`` trains
    "predict the next token". :func:`next_token_pairs` shows the shift explicitly. The causal
    (lower-triangular) attention mask is built inside the model. With ``pad_id`` an ``attention_mask``
    (0 on padding) is added; without it there is none, which lets the model use its fastest causal kernel.
    """
    input_ids = _check_ids(input_ids)
    pad_id = check_int("pad_id", pad_id, minimum=0, allow_none=True)
    labels = input_ids.clone()  # (B, T)
    if pad_id is None:
        return {"input_ids": input_ids, "labels": labels}
    pad = input_ids == pad_id
    labels[pad] = IGNORE_INDEX
    return {"input_ids": input_ids, "attention_mask": (~pad).long(), "labels": labels}


def next_token_pairs(input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (context, target) pairs a causal LM learns: ``inputs[:, :-1]`` predicts ``inputs[:, 1:]``.

    This is the shift that ``transformers`` applies to ``labels`` internally.
    """
    input_ids = _check_ids(input_ids)
    return input_ids[:, :-1], input_ids[:, 1:]  # (B, T-1) each


# ----------------------------------------------------------------------------------------------- MLM


def mlm_select(
    input_ids: torch.Tensor,
    *,
    probability: float = 0.15,
    special_ids: Sequence[int] = (),
    pad_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which tokens MLM selects for prediction: each ordinary token independently with ``probability``.

    Special tokens and padding are never selected; a row where the draw selects nothing gets its one
    least-drawn eligible token, so no row has an undefined loss. Returns a bool tensor ``(B, T)``. (Per-token Bernoulli
    draws, as Hugging Face's ``DataCollatorForLanguageModeling``; BERT's original code picked exactly
    ``round(0.15 * T)`` per sequence -- the same 15% on average.)
    """
    input_ids = _check_ids(input_ids)
    probability = _check_fraction("probability", probability)
    special_ids = _check_id_list("special_ids", special_ids)
    pad_id = check_int("pad_id", pad_id, minimum=0, allow_none=True)
    eligible = torch.ones_like(input_ids, dtype=torch.bool)  # (B, T)
    for sid in [*special_ids, *([] if pad_id is None else [pad_id])]:
        eligible &= input_ids != sid
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)  # (B, T)
    selected = (draw < probability) & eligible
    # a row with nothing selected would give a loss of 0/0 = NaN: select its eligible token with the lowest
    # draw (BERT likewise predicts at least one token per sequence)
    empty = ~selected.any(dim=1) & eligible.any(dim=1)  # (B,)
    if probability > 0 and empty.any():
        first = torch.where(eligible, draw, torch.full_like(draw, 2.0)).argmin(dim=1)  # (B,)
        rows = empty.nonzero().squeeze(1)
        selected[rows, first[rows]] = True
    return selected


def mlm_corrupt(
    input_ids: torch.Tensor,
    selected: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Apply BERT's 80/10/10 rule to the ``selected`` positions and build the labels.

    Of the selected tokens, ``mask_fraction`` become ``mask_id``, ``random_fraction`` become a random
    ordinary token (uniform over the vocabulary minus ``special_ids`` and ``mask_id``), the rest stay
    unchanged. ``labels`` hold the original token at selected positions and -100 everywhere else, so the
    loss counts only the selected tokens (also the unchanged ones: the model cannot tell which they are).
    """
    vocab_size = check_int("vocab_size", vocab_size, minimum=2)
    mask_id = check_int("mask_id", mask_id, minimum=0)
    input_ids = _check_ids(input_ids, vocab_size)
    if not isinstance(selected, torch.Tensor) or selected.shape != input_ids.shape or selected.dtype != torch.bool:
        raise ValueError(f"selected must be a bool tensor of shape {tuple(input_ids.shape)}")
    mask_fraction = _check_fraction("mask_fraction", mask_fraction)
    random_fraction = _check_fraction("random_fraction", random_fraction)
    special_ids = _check_id_list("special_ids", special_ids)
    if mask_fraction + random_fraction > 1.0 + 1e-9:
        raise ValueError(
            f"mask_fraction + random_fraction must be <= 1, got {mask_fraction} + {random_fraction}"
        )
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} must be in [0, vocab_size={vocab_size})")
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))  # (B, T)
    # one uniform draw per position decides its fate: [0, m) mask, [m, m + r) random, the rest unchanged
    u = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    to_mask = selected & (u < mask_fraction)
    to_random = selected & (u >= mask_fraction) & (u < mask_fraction + random_fraction)
    excluded = torch.tensor(sorted({*special_ids, mask_id}), device=input_ids.device)
    pool = torch.arange(vocab_size, device=input_ids.device)
    pool = pool[~torch.isin(pool, excluded)]  # ordinary tokens only: a "random word"
    picks = torch.randint(len(pool), input_ids.shape, generator=generator, device=input_ids.device)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    corrupted = torch.where(to_random, pool[picks], corrupted)
    return {"input_ids": corrupted, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def mlm_batch(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    pad_id: int | None = None,
    probability: float = 0.15,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Masked language modelling batch (BERT's rule): :func:`mlm_select` then :func:`mlm_corrupt`.

    Returns ``input_ids`` (corrupted), ``attention_mask`` (0 on padding) and ``labels`` (original token at
    the selected positions, -100 elsewhere). Every row with an ordinary token has at least one label.
    """
    selected = mlm_select(
        input_ids, probability=probability, special_ids=special_ids, pad_id=pad_id, generator=generator
    )
    batch = mlm_corrupt(
        input_ids,
        selected,
        mask_id=mask_id,
        vocab_size=vocab_size,
        special_ids=[*special_ids, *([] if pad_id is None else [pad_id])],
        mask_fraction=mask_fraction,
        random_fraction=random_fraction,
        generator=generator,
    )
    if pad_id is not None:
        batch["attention_mask"] = (input_ids != pad_id).long()
    return batch


# ------------------------------------------------------------------------------------ span corruption


def span_counts(length: int, noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[int, int]:
    """(noise tokens, noise spans) T5 uses for a sequence of ``length`` tokens.

    As in T5's ``random_spans_noise_mask``: ``round(length * density)`` noise tokens (at least 1, at most
    ``length - 1``) cut into ``round(noise / mean_span_length)`` spans (at least 1).
    """
    length = check_int("length", length, minimum=2)  # one kept token and one noise token at least
    noise_density = _check_fraction("noise_density", noise_density, low_open=True)
    mean_span_length = check_number("mean_span_length", mean_span_length, minimum=1)
    n_noise = min(max(round(length * noise_density), 1), length - 1)
    n_spans = max(round(n_noise / mean_span_length), 1)
    return n_noise, n_spans


def _random_segmentation(batch: int, n_items: int, n_segments: int, generator, device) -> torch.Tensor:
    """Split ``n_items`` into ``n_segments`` non-empty segments uniformly at random, per row: (B, S) lengths."""
    # choose S - 1 of the n_items - 1 gaps between items as segment boundaries (a random permutation's
    # first S - 1 ranks), exactly T5's shuffled "mask_indices"
    ranks = torch.rand(batch, n_items - 1, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    first_in_segment = torch.cat(
        [torch.zeros(batch, 1, dtype=torch.long, device=device), (ranks < n_segments - 1).long()], dim=1
    )  # (B, n_items)
    segment_id = first_in_segment.cumsum(dim=1)  # (B, n_items), values 0..S-1
    lengths = torch.zeros(batch, n_segments, dtype=torch.long, device=device)
    return lengths.scatter_add_(1, segment_id, torch.ones_like(segment_id))  # (B, S)


def random_spans_noise_mask(
    batch: int,
    length: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """T5's ``random_spans_noise_mask`` for ``batch`` rows: a bool tensor ``(B, T)``, True = noise.

    The noise tokens and the kept tokens are each cut into the same number of random non-empty spans,
    which then alternate kept, noise, kept, noise, ... (so a row starts with kept tokens and ends with a
    noise span). Every row has exactly the counts of :func:`span_counts`.
    """
    batch = check_int("batch", batch, minimum=1)
    n_noise, n_spans = span_counts(length, noise_density, mean_span_length)
    noise_lengths = _random_segmentation(batch, n_noise, n_spans, generator, device)  # (B, S)
    kept_lengths = _random_segmentation(batch, length - n_noise, n_spans, generator, device)  # (B, S)
    interleaved = torch.stack([kept_lengths, noise_lengths], dim=2).reshape(batch, 2 * n_spans)  # (B, 2S)
    span_starts = interleaved.cumsum(dim=1)[:, :-1]  # (B, 2S-1): where each span after the first begins
    indicator = torch.zeros(batch, length, dtype=torch.long, device=device)
    indicator.scatter_(1, span_starts, 1)
    span_number = indicator.cumsum(dim=1)  # (B, T): 0 for the first kept span, 1 for the first noise span...
    return span_number % 2 == 1


def _pack_left(values: torch.Tensor, keep: torch.Tensor, fill: int) -> torch.Tensor:
    """Per row, move the ``keep`` entries to the front (order preserved); pad to the longest row with ``fill``."""
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # kept positions first
    packed = values.gather(1, order)
    kept = keep.gather(1, order)
    width = int(keep.sum(dim=1).max())
    return torch.where(kept, packed, torch.full_like(packed, fill))[:, :width]


def span_corrupt(
    input_ids: torch.Tensor,
    noise_mask: torch.Tensor,
    sentinel_ids: Sequence[int],
    *,
    pad_id: int = 0,
    eos_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """Replace each noise span by one sentinel; the target is each sentinel + its span, then a final sentinel.

    ``noise_mask``: bool ``(B, T)`` (any mask, e.g. from :func:`random_spans_noise_mask`).
    ``sentinel_ids``: the ids of ``<extra_id_0>``, ``<extra_id_1>``, ... in order of appearance.
    With ``eos_id`` both sequences end with it (as T5 does). Rows of different lengths are padded with
    ``pad_id`` (inputs, ``attention_mask`` 0) and -100 (labels); T5's own masks give equal lengths.
    Returns ``input_ids``, ``attention_mask`` and ``labels`` for ``T5ForConditionalGeneration``, which
    builds the decoder inputs by shifting ``labels`` right.
    """
    input_ids = _check_ids(input_ids)
    sentinel_ids = _check_id_list("sentinel_ids", sentinel_ids)
    pad_id = check_int("pad_id", pad_id, minimum=0)
    eos_id = check_int("eos_id", eos_id, minimum=0, allow_none=True)
    if not isinstance(noise_mask, torch.Tensor) or noise_mask.shape != input_ids.shape or noise_mask.dtype != torch.bool:
        raise ValueError(f"noise_mask must be a bool tensor of shape {tuple(input_ids.shape)}")
    B, T = input_ids.shape
    device = input_ids.device
    previous = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=device), noise_mask[:, :-1]], dim=1)
    span_start = noise_mask & ~previous  # (B, T): first token of each noise span
    span_index = span_start.long().cumsum(dim=1) - 1  # (B, T): which span a noise token belongs to
    n_spans = span_start.sum(dim=1)  # (B,)
    if int(n_spans.max()) + 1 > len(sentinel_ids):
        raise ValueError(
            f"sentinel_ids has {len(sentinel_ids)} ids but a row needs {int(n_spans.max()) + 1} "
            "(one per span plus the closing one)"
        )
    sentinels = torch.as_tensor(list(sentinel_ids), dtype=input_ids.dtype, device=device)
    sentinel_at = sentinels[span_index.clamp(min=0)]  # (B, T): the sentinel of each position's span

    # encoder input: keep the non-noise tokens; the first token of each span becomes its sentinel
    enc_values = torch.where(span_start, sentinel_at, input_ids)
    enc = _pack_left(enc_values, ~noise_mask | span_start, pad_id)  # (B, T - noise + spans)

    # target: slot 0 of each position holds its span's sentinel (span starts only), slot 1 the noise token
    slots = torch.stack([sentinel_at, input_ids], dim=2).reshape(B, 2 * T)  # (B, 2T)
    valid = torch.stack([span_start, noise_mask], dim=2).reshape(B, 2 * T)
    closing = sentinels[n_spans].unsqueeze(1)  # (B, 1): the next unused sentinel closes the target
    slots = torch.cat([slots, closing], dim=1)
    valid = torch.cat([valid, torch.ones(B, 1, dtype=torch.bool, device=device)], dim=1)
    # the closing sentinel must come right after the last noise token: it is the last valid slot anyway
    labels = _pack_left(slots, valid, IGNORE_INDEX)  # (B, noise + spans + 1)

    if eos_id is not None:
        enc = _append_eos(enc, eos_id, pad_id)
        labels = _append_eos(labels, eos_id, IGNORE_INDEX)
    return {"input_ids": enc, "attention_mask": (enc != pad_id).long(), "labels": labels}


def _append_eos(x: torch.Tensor, eos_id: int, fill: int) -> torch.Tensor:
    """Write ``eos_id`` after the last non-``fill`` entry of every row (one column longer)."""
    x = torch.cat([x, torch.full_like(x[:, :1], fill)], dim=1)
    lengths = (x != fill).sum(dim=1, keepdim=True)  # (B, 1)
    return x.scatter(1, lengths, eos_id)


def span_corruption_batch(
    input_ids: torch.Tensor,
    *,
    sentinel_ids: Sequence[int],
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    pad_id: int = 0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """T5 span corruption: :func:`random_spans_noise_mask` then :func:`span_corrupt`."""
    input_ids = _check_ids(input_ids)
    B, T = input_ids.shape
    noise = random_spans_noise_mask(B, T, noise_density, mean_span_length, generator, input_ids.device)
    return span_corrupt(input_ids, noise, sentinel_ids, pad_id=pad_id, eos_id=eos_id)


def span_uncorrupt(inputs: Sequence[int], targets: Sequence[int], sentinel_ids: Sequence[int]) -> list[int]:
    """Rebuild the original sequence from one row's input and target (the inverse of :func:`span_corrupt`).

    Pads, -100 and eos must be stripped first. Useful to check that corruption loses nothing.
    """
    index = {s: i for i, s in enumerate(sentinel_ids)}
    spans: dict[int, list[int]] = {}
    current = None
    for t in targets:
        if t in index:
            current = index[t]
            spans[current] = []
        elif current is not None:
            spans[current].append(t)
    out: list[int] = []
    for t in inputs:
        out.extend(spans.get(index[t], []) if t in index else [t])
    return out


# ------------------------------------------------------------------------------------------- dispatch


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
    if objective == "span":
        if not ids.get("sentinel_ids"):
            raise ValueError(
                "objective='span' needs sentinel_ids=[<extra_id_0>, <extra_id_1>, ...], got none"
            )
        return span_corruption_batch(input_ids, generator=generator, **ids)
    raise ValueError(f"objective={objective!r} is not valid; choose one of {OBJECTIVES}")


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
