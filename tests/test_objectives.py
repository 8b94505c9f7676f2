"""Tests for utils/objectives.py: CLM labels, BERT's 15% / 80-10-10 rule, T5 span corruption."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.objectives import (
    IGNORE_INDEX,
    attention_masks,
    clm_batch,
    lecture_examples,
    make_batch,
    mlm_batch,
    next_token_pairs,
    objective_ids,
    random_spans_noise_mask,
    span_corrupt,
    span_corruption_batch,
    span_counts,
    span_uncorrupt,
)

VOCAB = 1000
PAD, EOS, CLS, MASK = 0, 1, 2, 3
SPECIALS = [PAD, EOS, CLS, MASK]
SENTINELS = list(range(VOCAB - 1, VOCAB - 101, -1))  # <extra_id_0> = 999, <extra_id_1> = 998, ...


def _ordinary(shape, seed=0):
    return torch.randint(10, VOCAB - 100, shape, generator=torch.Generator().manual_seed(seed))


def _runs(mask_row):
    """Lengths of the runs of True in a 1-D bool tensor."""
    runs, n = [], 0
    for v in mask_row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


# ----------------------------------------------------------------------------------------------- CLM


def test_clm_labels_are_the_inputs_unshifted_and_pads_ignored():
    x = torch.tensor([[5, 6, 7, PAD], [8, 9, 10, 11]])
    b = clm_batch(x, pad_id=PAD)
    assert torch.equal(b["input_ids"], x)
    assert b["labels"].tolist() == [[5, 6, 7, IGNORE_INDEX], [8, 9, 10, 11]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    context, target = next_token_pairs(x)
    assert context.tolist() == [[5, 6, 7], [8, 9, 10]] and target.tolist() == [[6, 7, PAD], [9, 10, 11]]


# ----------------------------------------------------------------------------------------------- MLM


def test_mlm_proportions_follow_berts_rule():
    x = _ordinary((64, 512))
    x[:, 0] = CLS  # special tokens and padding must never be selected
    x[:, -40:] = PAD
    b = mlm_batch(
        x,
        mask_id=MASK,
        vocab_size=VOCAB,
        special_ids=[CLS, EOS],
        pad_id=PAD,
        generator=torch.Generator().manual_seed(1),
    )
    selected = b["labels"] != IGNORE_INDEX
    eligible = (x != CLS) & (x != PAD)
    n_sel = int(selected.sum())
    # 64 * 471 eligible tokens: the binomial standard deviation of the 15% is ~0.002, of 80/10/10 ~0.006
    assert abs(n_sel / int(eligible.sum()) - 0.15) < 0.01
    masked = (b["input_ids"] == MASK) & selected
    unchanged = (b["input_ids"] == x) & selected
    randomised = selected & ~masked & ~unchanged
    assert abs(int(masked.sum()) / n_sel - 0.80) < 0.03
    assert abs(int(randomised.sum()) / n_sel - 0.10) < 0.02
    assert abs(int(unchanged.sum()) / n_sel - 0.10) < 0.02
    # random replacements are ordinary tokens, never the mask or a special token
    assert not torch.isin(b["input_ids"][randomised], torch.tensor(SPECIALS)).any()


def test_mlm_loss_only_at_selected_positions():
    x = _ordinary((16, 128), seed=3)
    x[:, -5:] = PAD
    b = mlm_batch(
        x,
        mask_id=MASK,
        vocab_size=VOCAB,
        special_ids=[EOS],
        pad_id=PAD,
        generator=torch.Generator().manual_seed(2),
    )
    selected = b["labels"] != IGNORE_INDEX
    assert torch.equal(b["labels"][selected], x[selected])  # the originals are the targets
    assert not (b["input_ids"] != x)[~selected].any()  # nothing outside the selection is touched
    assert not selected[:, -5:].any() and not b["attention_mask"][:, -5:].any()


def test_mlm_never_leaves_a_row_without_a_label():
    x = _ordinary((2000, 4))  # 0.85^4: about half the rows would draw no token at all
    x[:5] = PAD  # an all-padding row has nothing to predict and stays empty
    b = mlm_batch(x, mask_id=MASK, vocab_size=VOCAB, pad_id=PAD, generator=torch.Generator().manual_seed(0))
    per_row = (b["labels"] != IGNORE_INDEX).sum(dim=1)
    assert (per_row[5:] >= 1).all() and (per_row[:5] == 0).all()


def test_mlm_is_deterministic_given_the_generator():
    x = _ordinary((4, 64))
    kw = dict(mask_id=MASK, vocab_size=VOCAB)
    a = mlm_batch(x, generator=torch.Generator().manual_seed(7), **kw)
    b = mlm_batch(x, generator=torch.Generator().manual_seed(7), **kw)
    c = mlm_batch(x, generator=torch.Generator().manual_seed(8), **kw)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], c["labels"])


# ------------------------------------------------------------------------------------ span corruption


def test_noise_mask_density_and_mean_span_length():
    mask = random_spans_noise_mask(256, 512, generator=torch.Generator().manual_seed(0))
    n_noise, n_spans = span_counts(512)
    assert (n_noise, n_spans) == (77, 26)  # round(512 * 0.15), round(77 / 3)
    assert (mask.sum(dim=1) == n_noise).all()
    assert abs(mask.float().mean().item() - 0.15) < 0.005
    spans = [r for row in mask for r in _runs(row)]
    assert len(spans) == 256 * n_spans
    assert abs(sum(spans) / len(spans) - 3.0) < 0.1
    assert min(spans) >= 1 and max(spans) > 3  # random lengths, not all 3
    assert not mask[:, 0].any() and mask[:, -1].all()  # T5's layout: kept first, noise last


def test_span_corruption_reconstructs_exactly_with_sentinels_in_order():
    x = _ordinary((32, 128), seed=5)
    b = span_corruption_batch(
        x, sentinel_ids=SENTINELS, eos_id=EOS, generator=torch.Generator().manual_seed(4)
    )
    n_noise, n_spans = span_counts(128)
    assert b["input_ids"].shape == (32, 128 - n_noise + n_spans + 1)  # + eos
    assert b["labels"].shape == (32, n_noise + n_spans + 1 + 1)  # + closing sentinel + eos
    for inp, tgt, orig in zip(b["input_ids"], b["labels"], x):
        inp, tgt = inp.tolist()[:-1], tgt.tolist()[:-1]  # strip eos
        in_sent = [t for t in inp if t in SENTINELS]
        tgt_sent = [t for t in tgt if t in SENTINELS]
        assert in_sent == SENTINELS[:n_spans]
        assert (
            tgt_sent == SENTINELS[: n_spans + 1] and tgt[0] == SENTINELS[0] and tgt[-1] == SENTINELS[n_spans]
        )
        assert span_uncorrupt(inp, tgt, SENTINELS) == orig.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=30))
def test_span_corrupt_inverts_for_any_mask(noise):
    x = torch.arange(10, 10 + len(noise)).unsqueeze(0)  # (1, T)
    mask = torch.tensor([noise])
    b = span_corrupt(x, mask, SENTINELS)
    inp = [t for t in b["input_ids"][0].tolist() if t != PAD]
    tgt = [t for t in b["labels"][0].tolist() if t != IGNORE_INDEX]
    assert span_uncorrupt(inp, tgt, SENTINELS) == x[0].tolist()
    n_spans = len(_runs(mask[0]))
    assert len(tgt) == sum(noise) + n_spans + 1


def test_span_corrupt_pads_rows_of_different_lengths():
    x = torch.arange(10, 18).repeat(2, 1)
    mask = torch.tensor([[0, 1, 1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    b = span_corrupt(x, mask, SENTINELS, pad_id=PAD)
    assert b["input_ids"].tolist() == [[10, 999, 13, 14, 15, 998, 17, PAD], [10, 11, 12, 13, 14, 999, 16, 17]]
    assert b["labels"].tolist() == [[999, 11, 12, 998, 16, 997], [999, 15, 998, -100, -100, -100]]
    assert b["attention_mask"].tolist() == [[1] * 7 + [0], [1] * 8]


def test_too_few_sentinels_is_a_clear_error():
    x = _ordinary((2, 128))
    with pytest.raises(ValueError, match="sentinel_ids"):
        span_corruption_batch(x, sentinel_ids=SENTINELS[:3])


# ----------------------------------------------------------------------------------- lecture + masks


def test_lecture_examples_match_the_lecture():
    ex = lecture_examples()
    assert " ".join(ex["mlm"].inputs) == "The teacher <MASK> the student"
    assert " ".join(ex["mlm"].targets) == "The teacher teaches the student"
    assert " ".join(ex["clm"].inputs) == "The teacher" and ex["clm"].targets == ["teaches"]
    assert " ".join(ex["span"].inputs) == "The teacher <X> student"
    assert (
        " ".join(ex["span"].targets) == "<X> teaches the <Y>"
    )  # T5 closes with a sentinel; the lecture omits it


def test_objective_ids_from_the_course_tokenizer():
    from utils.tokenizer import MIN_VOCAB_SIZE, train_tokenizer

    tok = train_tokenizer("The teacher teaches the student. " * 20, vocab_size=MIN_VOCAB_SIZE)
    mlm = objective_ids("mlm", tok)
    assert mlm["mask_id"] == tok.mask_token_id and mlm["vocab_size"] == len(tok) and mlm["pad_id"] == 0
    assert set(mlm["special_ids"]) >= {tok.mask_token_id, tok.pad_token_id, tok.eos_token_id}
    span = objective_ids("span", tok)
    assert tok.convert_ids_to_tokens(span["sentinel_ids"][:2]) == ["<extra_id_0>", "<extra_id_1>"]
    assert len(span["sentinel_ids"]) == 100 and span["eos_id"] == tok.eos_token_id
    assert objective_ids("clm", tok) == {}
    ids = torch.tensor([tok("The teacher teaches the student.")["input_ids"] * 8])
    for objective in ("mlm", "span"):
        batch = make_batch(
            objective, ids, generator=torch.Generator().manual_seed(0), **objective_ids(objective, tok)
        )
        assert (batch["labels"] != IGNORE_INDEX).any()


def test_attention_masks():
    m = attention_masks(5, 3)
    assert m["bidirectional"].all()
    assert torch.equal(m["causal"], torch.tril(torch.ones(3, 3, dtype=torch.bool)))
    ed = m["encoder-decoder"]
    assert ed.shape == (8, 8)
    assert ed[:5, :5].all() and not ed[:5, 5:].any()  # the encoder never sees the decoder
    assert ed[5:, :5].all() and torch.equal(ed[5:, 5:], m["causal"])


def test_make_batch_errors_name_the_argument():
    x = _ordinary((2, 16))
    with pytest.raises(ValueError, match="objective='xlm'.*clm"):
        make_batch("xlm", x)
    with pytest.raises(ValueError, match="mask_id"):
        make_batch("mlm", x, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="input_ids"):
        clm_batch(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="probability"):
        mlm_batch(x, mask_id=MASK, vocab_size=VOCAB, probability=1.5)
