"""utils.models: presets build for every family, and the parameter arithmetic matches the built models."""

import pytest
import torch

from utils.env import seed_everything
from utils.models import (
    FAMILIES,
    PRESETS,
    ModelConfig,
    build_model,
    config_for,
    count_parameters,
    describe,
    estimate_parameters,
    model_config,
)

FAST_PRESETS = [p for p in PRESETS if p != "gpt2-small"]
GPT2_VOCAB = 50257


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", FAST_PRESETS)
def test_presets_build_and_counts_are_exact(family, preset):
    model = build_model(family, preset)
    counted = count_parameters(model)
    assert 0 < counted.embedding < counted.total
    assert estimate_parameters(family, preset) == counted  # the closed form (no torch) against the built model
    assert estimate_parameters(model_config(family, preset)) == counted


@pytest.mark.parametrize("family", FAMILIES)
def test_gpt2_small_shape_on_the_meta_device(family):
    # The structure without allocating ~1 GB: parameters live on the meta device.
    with torch.device("meta"):
        model = build_model(family, "gpt2-small", vocab_size=GPT2_VOCAB)
    assert estimate_parameters(family, "gpt2-small", vocab_size=GPT2_VOCAB) == count_parameters(model)


def test_gpt2_small_matches_the_published_124m():
    count = estimate_parameters("decoder", "gpt2-small", vocab_size=GPT2_VOCAB)
    assert count.total == 124_439_808  # GPT-2 small (HF "gpt2"), tied embeddings
    assert count.embedding == GPT2_VOCAB * 768 + 1024 * 768
    assert count.non_embedding == 85_056_000  # the "85M" of Kaplan et al.'s 12 x 12 h^2 approximation


def test_preset_sizes_are_as_advertised():
    assert estimate_parameters("decoder", "tiny").total < 1_000_000
    assert 1_000_000 <= estimate_parameters("decoder", "small").total <= 3_000_000
    assert 10_000_000 <= estimate_parameters("decoder", "medium").total <= 20_000_000


def test_untied_decoder_adds_an_output_matrix():
    tied = count_parameters(build_model("decoder", "tiny"))
    untied_model = build_model("decoder", "tiny", tie_embeddings=False)
    untied = count_parameters(untied_model)
    assert untied_model.lm_head.weight is not untied_model.transformer.wte.weight
    assert untied.total - tied.total == 4096 * 64
    assert estimate_parameters("decoder", "tiny", tie_embeddings=False) == untied


def test_model_classes_and_attention():
    import transformers
    from packaging.version import Version

    # T5 gained the fused attention in transformers 5.15; pyproject allows releases before it, where
    # build_model must fall back to eager attention (GPT-2 and BERT have sdpa in every allowed release)
    t5_attention = "sdpa" if Version(transformers.__version__) >= Version("5.15") else "eager"
    expected = {
        "decoder": ("GPT2LMHeadModel", "sdpa"),
        "encoder": ("BertForMaskedLM", "sdpa"),
        "encoder-decoder": ("T5ForConditionalGeneration", t5_attention),
    }
    for family, (cls, attention) in expected.items():
        model = build_model(family)
        assert type(model).__name__ == cls
        assert model.config._attn_implementation == attention
        assert model.config.vocab_size == 4096 and model.config.pad_token_id == 0


def test_config_for_reflects_the_shape():
    cfg = config_for("decoder", "small", vocab_size=1000, n_layers=3)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.n_positions, cfg.vocab_size) == (
        3,
        128,
        4,
        512,
        256,
        1000,
    )
    t5 = config_for(ModelConfig("encoder-decoder", 2, 64, 4, 256, 128))
    assert (t5.num_layers, t5.num_decoder_layers, t5.d_kv, t5.decoder_start_token_id) == (2, 2, 16, 0)


def test_seeded_construction_is_deterministic():
    seed_everything(123)
    a = build_model("decoder", "tiny").state_dict()
    seed_everything(123)
    b = build_model("decoder", "tiny").state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_pass_gives_a_finite_loss(family):
    model = build_model(family, "tiny")
    ids = torch.randint(3, 4096, (2, 16))
    if family == "encoder-decoder":
        out = model(input_ids=ids, labels=ids[:, :8].contiguous())
        assert out.logits.shape == (2, 8, 4096)
    else:
        out = model(input_ids=ids, labels=ids)
        assert out.logits.shape == (2, 16, 4096)
    # untrained: close to ln(vocab) = 8.3, the loss of a uniform guess
    assert torch.isfinite(out.loss) and 7.0 < out.loss.item() < 10.0


def test_decoder_tiny_counted_by_hand():
    # V = 4096, P = 128 positions, h = 64, f = 256, L = 2. Embeddings: V*h + P*h = 270,336. Per layer: two
    # LayerNorms 4h, QKV 3h^2 + 3h, output projection h^2 + h, MLP 2hf + f + h: 49,984. Final LayerNorm 2h.
    counted = count_parameters(build_model("decoder", "tiny"))
    assert (counted.total, counted.embedding) == (270_336 + 2 * 49_984 + 128, 270_336) == (370_432, 270_336)


def test_describe_mentions_the_count():
    assert "370,432 parameters" in describe(model_config("decoder", "tiny"))


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: build_model("transformer"), "family"),
        (lambda: build_model("decoder", "huge"), "preset"),
        (lambda: build_model("decoder", n_layer=3), "overrides"),
        (lambda: model_config("decoder", d_model=65), "d_model"),
        (lambda: model_config("encoder", tie_embeddings=False), "tie_embeddings"),
        (lambda: model_config("decoder", dropout=1.5), "dropout"),
        (lambda: model_config("decoder", n_layers=0), "n_layers"),
    ],
)
def test_bad_arguments_raise_value_error(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_unknown_family_lists_the_choices():
    with pytest.raises(ValueError) as err:
        build_model("transformer")
    assert "'transformer'" in str(err.value)
    for family in FAMILIES:
        assert family in str(err.value)
    with pytest.raises(ValueError) as err:
        estimate_parameters("decoder", "huge")
    assert all(p in str(err.value) for p in PRESETS)
