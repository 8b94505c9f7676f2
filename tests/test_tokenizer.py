"""utils.tokenizer: byte-level BPE round trips exactly, special tokens are where they should be, caching works."""

import time

import pytest

from utils.data import DOCUMENT_SEPARATOR, encode_text, load_corpus
from utils.tokenizer import (
    EOS_TOKEN,
    MASK_TOKEN,
    PAD_TOKEN,
    SENTINEL_TOKENS,
    get_tokenizer,
    load_tokenizer,
    sentinel_token,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def prose_tokenizer():
    return get_tokenizer("prose")  # trained once per machine, then read from the course cache


def test_round_trip_is_exact_on_the_corpus(prose_tokenizer):
    text = load_corpus("prose")
    ids = encode_text(prose_tokenizer, text)
    assert prose_tokenizer.decode(ids) == text
    assert ids.count(prose_tokenizer.eos_token_id) == text.count(DOCUMENT_SEPARATOR)
    assert len(ids) < len(text) / 3  # BPE compresses: several characters per token


@pytest.mark.parametrize(
    "sample",
    [
        "  leading spaces",
        "tabs\tand\r\nCRLF",
        "unicode: café, 東京, 🙂",
        "x ,y . z",
        "def f(a, b):\n    return a",
    ],
)
def test_round_trip_on_awkward_text(prose_tokenizer, sample):
    ids = prose_tokenizer(sample, add_special_tokens=False)["input_ids"]
    assert prose_tokenizer.decode(ids) == sample


def test_special_tokens_and_ids(prose_tokenizer):
    tok = prose_tokenizer
    assert len(tok) == 4096
    assert (tok.pad_token, tok.pad_token_id) == (PAD_TOKEN, 0)
    assert (tok.eos_token, tok.eos_token_id, tok.bos_token_id) == (EOS_TOKEN, 1, 1)
    assert (tok.mask_token, tok.mask_token_id) == (MASK_TOKEN, 2)
    assert tok.convert_tokens_to_ids(list(SENTINEL_TOKENS)) == list(range(3, 103))
    assert set(SENTINEL_TOKENS) <= set(tok.all_special_tokens)
    # a special token is one id, never split into bytes
    ids = tok(f"a {MASK_TOKEN} b <extra_id_7>", add_special_tokens=False)["input_ids"]
    assert ids.count(2) == 1 and ids.count(10) == 1 and len(ids) <= 6
    assert tok("hello")["input_ids"] == tok("hello", add_special_tokens=False)["input_ids"]  # no BOS added


def test_model_config_ids_match_the_tokenizer(prose_tokenizer):
    from utils.models import ModelConfig

    defaults = ModelConfig("decoder", 1, 8, 1, 8, 8)
    assert (defaults.pad_token_id, defaults.eos_token_id, defaults.vocab_size) == (
        prose_tokenizer.pad_token_id,
        prose_tokenizer.eos_token_id,
        len(prose_tokenizer),
    )


def test_training_is_fast_and_deterministic():
    start = time.perf_counter()
    a = train_tokenizer("prose", vocab_size=1024)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"training took {elapsed:.1f}s; the course promises seconds"
    b = train_tokenizer("prose", vocab_size=1024)
    assert a.get_vocab() == b.get_vocab() and len(a) == 1024


def test_save_load_round_trip(prose_tokenizer, tmp_path):
    prose_tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    sample = load_corpus("code", max_chars=20_000)
    assert loaded(sample)["input_ids"] == prose_tokenizer(sample)["input_ids"]
    assert loaded.decode(loaded(sample)["input_ids"]) == sample
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.mask_token_id) == (0, 1, 2)
    assert loaded.clean_up_tokenization_spaces is False


def test_cache_is_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    first = get_tokenizer("prose", vocab_size=512)
    folders = list((tmp_path / "tokenizers").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("prose-512-")
    assert (folders[0] / "tokenizer.json").is_file()
    second = get_tokenizer("prose", vocab_size=512)
    assert list((tmp_path / "tokenizers").iterdir()) == folders  # no second entry, no temp leftovers
    assert first.get_vocab() == second.get_vocab()


def test_train_on_text_and_list():
    tok = train_tokenizer(["the cat sat on the mat"] * 50, vocab_size=400)
    assert tok.decode(tok("the cat")["input_ids"]) == "the cat"
    assert len(tok) <= 400


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer("prose", vocab_size=100)
    with pytest.raises(ValueError, match="corpus") as err:
        get_tokenizer("poetry")
    assert "'prose'" in str(err.value) and "'code'" in str(err.value)
    with pytest.raises(ValueError, match="text_or_corpus_name"):
        train_tokenizer(42)
    with pytest.raises(ValueError, match=r"i=100 is not valid; accepted: an int >= 0 and <= 99"):
        sentinel_token(100)
    assert sentinel_token(0) == "<extra_id_0>"
