"""The two objectives that keep every token in its place: causal (CLM) and masked (MLM) language modelling,
and the label conventions all three objectives share.

* **CLM** (decoder-only, GPT): predict each next token from the ones before it (:func:`clm_batch`).
* **MLM** (encoder-only, BERT): select 15% of the tokens; of those 80% -> mask, 10% -> a random token,
  10% unchanged; predict the originals at the selected positions only (:func:`mlm_batch`).

Positions that carry no loss have label :data:`IGNORE_INDEX` (-100), which every ``transformers`` loss skips.
Span corruption (T5), which changes sequence lengths, is in :mod:`utils.span_corruption`; all of them are
importable from :mod:`utils.objectives`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from utils.validate import check_fraction, check_int

#: Label value that ``torch.nn.CrossEntropyLoss`` (and so every transformers model) ignores.
IGNORE_INDEX = -100


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


def check_input_ids(input_ids: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    """:func:`check_token_ids` for the ``input_ids`` argument of every batch maker: ``(B, T)`` int64."""
    return check_token_ids("input_ids", input_ids, 2, vocab_size)


def check_id_list(name: str, ids, vocab_size: int | None = None) -> list[int]:
    """A sequence of token ids (ints or 0-D tensors), each checked and returned as a Python int."""
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
    input_ids = check_input_ids(input_ids)
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
    input_ids = check_input_ids(input_ids)
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
    input_ids = check_input_ids(input_ids)
    probability = check_fraction("probability", probability)
    special_ids = check_id_list("special_ids", special_ids)
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
    mask_id = check_int("mask_id", mask_id, minimum=0, maximum=vocab_size - 1)
    input_ids = check_input_ids(input_ids, vocab_size)
    if not isinstance(selected, torch.Tensor) or selected.shape != input_ids.shape or selected.dtype != torch.bool:
        raise ValueError(f"selected must be a bool tensor of shape {tuple(input_ids.shape)}")
    mask_fraction = check_fraction("mask_fraction", mask_fraction)
    random_fraction = check_fraction("random_fraction", random_fraction)
    special_ids = check_id_list("special_ids", special_ids)
    if mask_fraction + random_fraction > 1.0 + 1e-9:
        raise ValueError(f"mask_fraction + random_fraction = {mask_fraction} + {random_fraction} is not valid; "
                         "accepted: a sum <= 1 (the rest of the selected tokens stay unchanged)")
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
