"""Tests for utils/domain.py: fertility, in-context word splits, the mixture sampler, partial freezing."""

import math

import pytest
import torch

from utils.data import DOCUMENT_SEPARATOR
from utils.domain import (
    Fertility,
    MixtureBatches,
    fertility,
    freeze_all_but_last,
    mixture_counts,
    word_splits,
    worst_split_words,
)
from utils.models import build_model
from utils.tokenizer import train_tokenizer
from utils.train import TokenBatches, TrainConfig, train

PROSE = (
    "The parser reads the next token and returns a tuple. The parser keeps the position of the token.\n\n"
    "A function returns a value. The value of the function is the result of the call.\n\n"
) * 20


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tok():
    """A small byte-level BPE trained on English-like text: prose words whole, code identifiers in pieces."""
    return train_tokenizer(PROSE, vocab_size=400)


def test_fertility_counts_characters_words_tokens_without_separators(tok):
    text = "The parser reads" + DOCUMENT_SEPARATOR + "the token"
    f = fertility(tok, text)
    expected_tokens = len(tok.encode("The parser reads")) + len(tok.encode("the token"))
    assert f == Fertility(characters=25, words=5, tokens=expected_tokens)
    assert f.tokens_per_word == expected_tokens / 5 and f.tokens_per_char == expected_tokens / 25


def test_fertility_keeps_blank_lines_inside_a_document(tok):
    text = "The parser.\n\nThe token."
    assert fertility(tok, text) == Fertility(characters=len(text), words=4, tokens=len(tok.encode(text)))


def test_fertility_is_lower_on_the_domain_the_tokenizer_was_trained_on(tok):
    prose = fertility(tok, "The parser reads the next token and returns the value of the function.")
    code = fertility(tok, "def _xq(zz_kw, **vv): return isinstance(zz_kw, frozenset) or vv")
    assert prose.tokens_per_char < 0.5 * code.tokens_per_char


def test_word_splits_count_tokens_in_context(tok):
    text = "The parser reads. (parser) zzyzx zzyzx"
    splits = word_splits(tok, text)
    assert splits["parser"].count == 2 and splits["zzyzx"].count == 2
    assert "".join(splits["zzyzx"].pieces) == "zzyzx"
    # each occurrence's tokens are the tokens overlapping it; check one against the offsets directly
    enc = tok("zzyzx", add_special_tokens=False)
    assert splits["zzyzx"].tokens == len(enc["input_ids"]) > 2
    assert splits["The"].tokens == 1.0


def test_worst_split_words_ranks_by_tokens_or_cost(tok):
    text = "the the the the parser parser zzyzxq zzyzxq zzyzxq " + "qwvjk " * 6
    worst = worst_split_words(tok, text, k=2, min_count=3, by="tokens")
    assert worst[0].word == "zzyzxq" and worst[0].tokens >= worst[1].tokens
    cost = worst_split_words(tok, text, k=1, min_count=3, by="cost")
    assert cost[0].word == "qwvjk"  # fewer pieces, but six occurrences cost more extra tokens in total
    assert cost[0].extra_tokens == 6 * (cost[0].tokens - 1)
    assert all(w.count >= 3 for w in worst_split_words(tok, text, k=10, min_count=3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: worst_split_words(t, "a b", by="length"), "by='length'"),
        (lambda t: worst_split_words(t, "a b", k=0), "k=0"),
        (lambda t: word_splits(t, "a b", min_count=0), "min_count=0"),
        (lambda t: fertility(t, "   "), "text is empty"),
    ],
)
def test_bad_arguments_are_named(tok, call, message):
    with pytest.raises(ValueError, match=message):
        call(tok)


def test_fertility_rejects_non_text(tok):
    with pytest.raises(TypeError, match="text must be a str"):
        fertility(tok, b"bytes")


@pytest.mark.parametrize("weights", [(0.51, 0.49), (0.25, 0.75), (0.2, 0.3, 0.5), (1.0, 0.0)])
@pytest.mark.parametrize("n", [1, 7, 16])
def test_mixture_counts_are_exact_in_expectation_and_within_one_row(weights, n):
    grid = [(i + 0.5) / 10_000 for i in range(10_000)]  # the uniform offset, integrated by the midpoint rule
    mean = [0.0] * len(weights)
    for u in grid:
        counts = mixture_counts(weights, n, u)
        assert sum(counts) == n
        for k, (c, w) in enumerate(zip(counts, weights)):
            assert math.floor(w * n + 1e-9) <= c <= math.ceil(w * n - 1e-9)
            mean[k] += c / len(grid)
    for m, w in zip(mean, weights):
        assert abs(m - w * n) < 1e-3 * n  # exact up to the grid's resolution


def _sources(batch_size=16, seq_len=8):
    a = torch.zeros(1000, dtype=torch.long) + 5  # every token 5: rows from source 0 are all 5s
    b = torch.zeros(1000, dtype=torch.long) + 7
    return [TokenBatches(a, "clm", batch_size, seq_len, seed=1), TokenBatches(b, "clm", batch_size, seq_len, seed=2)]


def test_mixture_ratio_over_many_batches_and_rows_match_their_source():
    mix = MixtureBatches(_sources(), [51, 49], seed=0)  # weights are normalised
    assert mix.weights == pytest.approx((0.51, 0.49))
    n_from_a = []
    for i in range(400):
        b, rows = mix.batch(i), mix.row_sources(i)
        assert torch.equal(b["input_ids"][:, 0] == 5, rows == 0)  # each row really comes from its source
        n_from_a.append(int((rows == 0).sum()))
    assert set(n_from_a) == {8, 9}  # 0.51 * 16 = 8.16 rows: never further than one row from it
    assert abs(sum(n_from_a) / (400 * 16) - 0.51) < 0.005


def test_mixture_is_deterministic_per_seed_and_resumable():
    m1, m2, m3 = (MixtureBatches(_sources(), [0.5, 0.5], seed=s) for s in (3, 3, 4))
    first = [next(m1)["input_ids"] for _ in range(5)]
    assert all(torch.equal(x, m2.batch(i)["input_ids"]) for i, x in enumerate(first))
    assert any(not torch.equal(m3.row_sources(i), m1.row_sources(i)) for i in range(5))
    state = m1.state_dict()
    m2.load_state_dict(state)
    assert torch.equal(next(m1)["input_ids"], next(m2)["input_ids"])
    with pytest.raises(ValueError, match="seed=4"):
        m3.load_state_dict(state)


def test_mixture_trains_with_train():
    torch.manual_seed(0)
    model = build_model("decoder", "tiny", vocab_size=16, max_seq_len=8)
    mix = MixtureBatches(_sources(batch_size=4), [0.5, 0.5], seed=0)
    cfg = TrainConfig(steps=3, batch_size=4, log_every=1, eval_every=0, device="cpu", precision="fp32")
    history = train(model, mix, cfg, progress=False)
    assert len(history.loss) == 3 and mix.position == 3


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(weights=[1.0]), ValueError, "one per source"),
        (dict(weights=[-1.0, 2.0]), ValueError, "weights="),
        (dict(weights=[0, 0]), ValueError, "not all 0"),
        (dict(weights="ab"), TypeError, "sequence of numbers"),
        (dict(weights=[1, 1], seed=-1), ValueError, "seed=-1"),
    ],
)
def test_mixture_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        MixtureBatches(_sources(), **kwargs)


def test_mixture_rejects_mismatched_or_wrong_sources():
    with pytest.raises(ValueError, match="same batch_size"):
        MixtureBatches([_sources(seq_len=8)[0], _sources(seq_len=4)[1]], [1, 1])
    with pytest.raises(TypeError, match="sources\\[1\\]"):
        MixtureBatches([_sources()[0], [1, 2, 3]], [1, 1])
    with pytest.raises(ValueError, match="non-empty"):
        MixtureBatches([], [])


def test_mixture_counts_rejects_bad_offset():
    with pytest.raises(ValueError, match="u=1.0"):
        mixture_counts([0.5, 0.5], 4, 1.0)


def test_freeze_all_but_last_trains_only_the_top_blocks():
    model = build_model("decoder", "tiny", vocab_size=64)
    n = freeze_all_but_last(model, 1)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("transformer.h.1.", "transformer.ln_f.")) for name in trainable)
    top = sum(p.numel() for p in model.transformer.h[1].parameters()) + sum(
        p.numel() for p in model.transformer.ln_f.parameters()
    )
    assert n == top
    assert freeze_all_but_last(model, 0) == 0
    with pytest.raises(ValueError, match="n_blocks=3"):
        freeze_all_but_last(model, 3)
    with pytest.raises(TypeError, match="no .layers or .h"):
        freeze_all_but_last(torch.nn.Linear(2, 2), 1)
