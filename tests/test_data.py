"""utils.data: local corpora are deterministic, splits are deterministic and disjoint, blocks are exact."""

import gzip
import platform
import warnings

import pytest
import torch

from utils import corpus_snapshot, data
from utils.data import (
    CODE_MAX_CHARS,
    CORPORA,
    DOCUMENT_SEPARATOR,
    CorpusFallbackWarning,
    TokenDataset,
    chunk,
    corpus_stats,
    load_corpus,
    load_documents,
    load_hub_corpus,
    split_documents,
    stdlib_source_files,
    train_val_split,
)


@pytest.mark.parametrize("name", CORPORA)
def test_corpora_are_deterministic_and_non_trivial(name):
    text = load_corpus(name)
    data._documents.cache_clear()  # read the files again, not the in-process cache
    assert load_corpus(name) == text
    assert len(text) > 300_000  # both are hundreds of KB at least
    assert split_documents(text) == load_documents(name)  # the separator never occurs inside a document
    assert "\r" not in text and not any(line != line.rstrip() for line in text[:50_000].split("\n"))


def test_code_corpus_respects_its_budget_and_skips_tests():
    text = load_corpus("code")
    assert len(text) <= CODE_MAX_CHARS
    files = stdlib_source_files()
    assert files == sorted(files, key=lambda p: p.as_posix())  # one root, so sorted by relative path
    assert not any("test" in p.parts or "site-packages" in p.parts for p in files)
    assert "def " in text and "import " in text
    small = load_corpus("code", max_chars=100_000)
    assert len(small) <= 100_000 and text.startswith(small)


def test_prose_corpus_is_the_python_documentation():
    docs = load_documents("prose")
    assert len(docs) == len(set(docs)) == 78  # CPython 3.11.7's help topics; aliases with identical text once
    assert "assert" in docs[0].lower()  # sorted keys: "assert" comes first


@pytest.mark.skipif(platform.python_version() != data.SNAPSHOT_PYTHON,
                    reason=f"the snapshot was taken from CPython {data.SNAPSHOT_PYTHON}; other releases ship other "
                           "documentation and standard library (which is why the course uses a snapshot)")
@pytest.mark.parametrize("name", CORPORA)
def test_the_snapshot_is_what_its_python_ships(name):
    assert list(data.snapshot_documents(name)) == data.live_documents(name)


def test_a_damaged_or_missing_snapshot_is_an_error_not_another_dataset(tmp_path, monkeypatch):
    raw = gzip.decompress((data.CORPUS_DIR / "prose.json.gz").read_bytes())
    (tmp_path / "prose.json.gz").write_bytes(gzip.compress(raw.replace(b"assert", b"assort", 1)))
    monkeypatch.setattr(corpus_snapshot, "CORPUS_DIR", tmp_path)  # where snapshot_documents looks
    data.snapshot_documents.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"prose.json.gz is damaged or was changed"):
            data.snapshot_documents("prose")
        (tmp_path / "prose.json.gz").unlink()
        with pytest.raises(FileNotFoundError, match=r"prose.json.gz is missing"):
            data.snapshot_documents("prose")
    finally:
        monkeypatch.undo()
        data.snapshot_documents.cache_clear()
    assert data.snapshot_documents("prose")[0].startswith('The "assert" statement')


def test_split_is_deterministic_disjoint_and_complete():
    text = load_corpus("prose")
    train, val = train_val_split(text, val_fraction=0.1, seed=0)
    assert (train, val) == train_val_split(text, val_fraction=0.1, seed=0)
    assert train_val_split(text, seed=1) != (train, val)
    train_docs, val_docs = set(train.split(DOCUMENT_SEPARATOR)), set(val.split(DOCUMENT_SEPARATOR))
    assert not train_docs & val_docs
    assert train_docs | val_docs == set(load_documents("prose"))
    assert 0.05 < len(val) / len(text) < 0.2


def test_split_falls_back_to_paragraphs():
    text = "\n\n".join(f"paragraph {i} " * 5 for i in range(20))
    train, val = train_val_split(text, val_fraction=0.25)
    assert set(train.split("\n\n")).isdisjoint(val.split("\n\n"))
    assert len(train.split("\n\n")) + len(val.split("\n\n")) == 20


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, "0.1"])
def test_split_rejects_bad_fractions(bad):
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split("a\n\nb", val_fraction=bad)


def test_split_needs_two_documents():
    with pytest.raises(ValueError, match="at least 2"):
        train_val_split("one paragraph only")


def test_corpus_stats_counts():
    stats = corpus_stats(f"one two\nthree{DOCUMENT_SEPARATOR}four")
    assert (stats.words, stats.lines, stats.documents, stats.tokens) == (5, 4, 2, None)
    assert stats.characters == len(f"one two\nthree{DOCUMENT_SEPARATOR}four")


def test_chunk_and_token_dataset():
    ids = torch.arange(103)
    blocks = chunk(ids, 10)
    assert blocks.shape == (10, 10)
    torch.testing.assert_close(blocks.flatten(), ids[:100])
    dataset = TokenDataset(ids=ids, block_size=10)
    assert len(dataset) == 10
    torch.testing.assert_close(dataset[3], torch.arange(30, 40))
    with pytest.raises(ValueError, match="block_size"):
        chunk(ids, 0)
    with pytest.raises(ValueError, match="block_size"):
        chunk(ids, 500)


def test_unknown_corpus_lists_valid_names():
    with pytest.raises(ValueError) as err:
        load_corpus("poetry")
    assert "'poetry'" in str(err.value) and all(n in str(err.value) for n in CORPORA)


def test_hub_corpus_falls_back_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(CorpusFallbackWarning, match="local 'prose' corpus"):
        text = load_hub_corpus("wikitext", max_chars=50_000)
    assert text == load_corpus("prose", max_chars=50_000)
    with pytest.raises(ValueError, match="name"):
        load_hub_corpus("books3")


def test_hub_corpus_names_the_missing_package(monkeypatch):
    monkeypatch.setattr(data, "has_package", lambda name: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_hub_corpus(fallback="code", max_chars=10_000)
    assert any("pip install datasets" in str(w.message) for w in caught)
