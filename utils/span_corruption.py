"""T5's span corruption (encoder-decoder): replace random spans (noise density 0.15, mean span length 3) by
one sentinel each; the target lists each sentinel followed by the tokens it hid, closed by a final sentinel.

:func:`span_counts` and :func:`random_spans_noise_mask` follow T5's ``random_spans_noise_mask``;
:func:`span_corrupt` applies any noise mask; :func:`span_corruption_batch` does both; :func:`span_uncorrupt`
inverts one row (a check that corruption loses nothing). Importable from :mod:`utils.objectives` too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from utils.clm_mlm import IGNORE_INDEX, check_id_list, check_input_ids
from utils.validate import check_fraction, check_int, check_number


def span_counts(length: int, noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[int, int]:
    """(noise tokens, noise spans) T5 uses for a sequence of ``length`` tokens.

    As in T5's ``random_spans_noise_mask``: ``round(length * density)`` noise tokens (at least 1, at most
    ``length - 1``) cut into ``round(noise / mean_span_length)`` spans (at least 1).
    """
    length = check_int("length", length, minimum=2)  # one kept token and one noise token at least
    noise_density = check_fraction("noise_density", noise_density, low_open=True)
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
    input_ids = check_input_ids(input_ids)
    sentinel_ids = check_id_list("sentinel_ids", sentinel_ids)
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
    input_ids = check_input_ids(input_ids)
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
