"""Tests for utils/quant_models.py: whole-model quantization with bitsandbytes, device plumbing, measurements.

A tiny random Llama stands in for SmolLM2 (same module layout, milliseconds to build); the CUDA paths run
under ``make test-gpu`` and in notebook 04."""

import pytest
import torch
from torch import nn

from utils.env import has_package
from utils.quant_models import (
    MODEL_FORMATS,
    compute_dtype,
    format_dtype,
    int8_outlier_columns,
    measure_generation,
    quantize_model,
    replace_linears,
    state_bytes,
)

needs_bnb = pytest.mark.skipif(not has_package("bitsandbytes"), reason="bitsandbytes is not installed")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def tiny_llama(seed=0):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(cfg).eval()


class FakeTokenizer:
    eos_token_id = 0

    def __call__(self, text, return_tensors="pt"):
        from transformers import BatchEncoding

        return BatchEncoding({"input_ids": torch.tensor([[1 + ord(c) % 250 for c in text]])})

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(int(i)) for i in ids)


def test_compute_dtype_follows_the_device():
    assert compute_dtype("cpu") == torch.float32
    assert compute_dtype("cuda", bf16_ok=True) == torch.bfloat16
    assert compute_dtype("cuda", bf16_ok=False) == torch.float16  # a T4
    assert format_dtype("int8", "cuda", bf16_ok=True) == torch.float16  # bitsandbytes' int8 input type
    assert format_dtype("nf4", "cuda", bf16_ok=False) == torch.float16
    assert format_dtype("fp4", "cpu") == format_dtype("int8", "cpu") == torch.float32
    assert format_dtype("bf16", "cpu") == torch.bfloat16


def test_no_bf16_flag_reaches_the_quantized_layers(monkeypatch):
    monkeypatch.setenv("COURSE_NO_BF16", "1")
    assert compute_dtype("cuda") == torch.float16


@pytest.mark.parametrize("kwargs, match", [
    (dict(fmt="int4"), "fmt='int4'"),
    (dict(fmt="nf4", blocks="transformer.h"), "blocks='transformer.h'"),
    (dict(fmt="int8", threshold=-1.0), "threshold=-1.0"),
    (dict(fmt="nf4", blocksize=60), "blocksize=60"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_model(tiny_llama(), device="cpu", **kwargs)


@needs_bnb
@pytest.mark.parametrize("device", DEVICES)
def test_formats_shrink_the_blocks_and_keep_the_outputs_close(device):
    model = tiny_llama()
    ids = torch.randint(1, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(input_ids=ids).logits.float()
    blocks, err = {}, {}
    for fmt in MODEL_FORMATS:
        q = quantize_model(model, fmt, device)
        assert next(q.parameters()).device.type == device
        with torch.no_grad():
            out = q(input_ids=ids.to(device)).logits.float().cpu()
        blocks[fmt] = state_bytes(q.model.layers)
        err[fmt] = ((out - ref).norm() / ref.norm()).item()
    assert blocks["fp32"] == 2 * blocks["bf16"]
    assert 0.25 < blocks["int8"] / blocks["fp32"] < 0.27  # 8 of 32 bits + one fp32 scale per output row
    # 4 bits + double-quantized block scales (4.127 bits) + a few fixed statistics per layer, which weigh more
    # in matrices this small than in SmolLM2's (0.130 there)
    assert 0.129 < blocks["nf4"] / blocks["fp32"] < 0.16 and blocks["fp4"] == blocks["nf4"]
    assert err["fp32"] < 1e-5 and err["bf16"] < 0.02 and err["int8"] < 0.05  # fp32: GPU kernels round differently
    assert err["int8"] < err["nf4"] < 0.3 and err["fp4"] < 0.3
    assert quantize_model(model, "fp32", "cpu") is not model  # a copy: the caller's model is untouched
    assert all(type(m) is not nn.Linear or m.weight.dtype == torch.float32 for m in model.modules())


@needs_bnb
def test_replace_linears_swaps_every_block_linear_and_nothing_else():
    import bitsandbytes as bnb

    model = tiny_llama()
    assert replace_linears(model, "nf4") == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    kinds = {type(m) for m in model.model.layers.modules() if isinstance(m, nn.Linear)}
    assert kinds == {bnb.nn.Linear4bit} and type(model.lm_head) is nn.Linear  # the head is left alone
    assert model.model.layers[0].mlp.down_proj.weight.dtype == torch.float32  # quantized only by .to(device)
    assert replace_linears(tiny_llama(), "int8") == 14
    with pytest.raises(ValueError, match="fmt='bf16'"):
        replace_linears(tiny_llama(), "bf16")
    with pytest.raises(ValueError, match="blocksize=100"):
        replace_linears(tiny_llama(), "nf4", blocksize=100)
    with pytest.raises(ValueError, match="blocks='h'"):
        replace_linears(tiny_llama(), "nf4", blocks="h")


@needs_bnb
@pytest.mark.parametrize("fmt", ["int8", "nf4"])
def test_quantized_logits_do_not_depend_on_the_grad_mode(fmt):
    # bitsandbytes repacks a Linear4bit on AVX512-BF16 CPUs at its first forward whose input needs no grad
    # (bf16 scales): quantize_model freezes the parameters so that every forward takes the same path
    ids = torch.randint(1, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    model = tiny_llama()
    a, b = quantize_model(model, fmt, "cpu"), quantize_model(model, fmt, "cpu")
    first = a(input_ids=ids).logits  # grad mode on
    with torch.no_grad():
        second = b(input_ids=ids).logits
    assert not any(p.requires_grad for p in a.parameters())
    assert torch.equal(first, second)


@needs_bnb
def test_state_bytes_leaves_a_used_4bit_model_unchanged():
    # on AVX512-BF16 CPUs the first forward repacks Linear4bit, and bitsandbytes' state_dict() converts it
    # back with re-quantized scales; state_bytes must neither change the outputs nor the count
    ids = torch.randint(1, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    q = quantize_model(tiny_llama(), "nf4", "cpu")
    before = state_bytes(q)
    with torch.no_grad():
        first = q(input_ids=ids).logits
        assert state_bytes(q) == before  # exact: the serialized JSON metadata, whose length moves, is left out
        assert torch.equal(q(input_ids=ids).logits, first)


@needs_bnb
def test_state_bytes_counts_the_held_tensors_and_not_the_serialized_metadata():
    # what state_bytes leaves out is the one thing whose size repacking changes: the JSON text whose
    # nested_offset repr loses or gains a digit when the scales are re-quantized (the old +-1 B drift)
    from utils.quant_models import PACKED_METADATA

    q = quantize_model(tiny_llama(), "nf4", "cpu")
    sd = q.state_dict()
    packed = {k: v for k, v in sd.items() if PACKED_METADATA in k}
    assert len(packed) == 14 and all(v.dtype == torch.uint8 for v in packed.values())
    layer = q.model.layers[0].self_attn.q_proj
    assert str(layer.weight.quant_state.offset.item())[:6] in bytes(packed[
        "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4"].tolist()).decode()
    held = sum(v.numel() * v.element_size() for k, v in sd.items() if PACKED_METADATA not in k)
    tied = q.lm_head.weight.numel() * q.lm_head.weight.element_size()  # the head is the embedding: once
    assert state_bytes(q) == held - tied + 14 * 4  # + one fp32 offset per 4-bit layer
    assert state_bytes(q, exclude_tied=False) == held + 14 * 4


@needs_bnb
@pytest.mark.parametrize("device", DEVICES)
def test_int8_keeps_exactly_the_columns_at_or_above_the_threshold(device):
    class Net(nn.Module):  # the attribute path quantize_model expects: model.layers
        def __init__(self):
            super().__init__()
            self.model = nn.Module()
            self.model.layers = nn.ModuleList([nn.Linear(64, 32)])

        def forward(self, x):
            return self.model.layers[0](x)

    torch.manual_seed(0)
    q = quantize_model(Net(), "int8", device)
    x = torch.randn(8, 64).clamp(-3, 3)
    x[2, 5], x[7, 40], x[0, 41] = 10.0, -25.0, 6.0  # two clear outliers, one exactly at the threshold
    dtype = torch.float16 if device == "cuda" else torch.float32
    (report,) = int8_outlier_columns(q, {"x": x.to(device, dtype)})
    assert report.kept_16bit == [5, 40, 41] == report.above_threshold  # bitsandbytes selects |x| >= 6
    assert report.in_features == 64 and report.max_abs[40] == 25.0


@needs_bnb
def test_measure_generation_counts_new_tokens_on_cpu():
    q = quantize_model(tiny_llama(), "nf4", "cpu")
    run = measure_generation(q, FakeTokenizer(), "hello", max_new_tokens=5)
    assert run.new_tokens == 5 and run.tokens_per_s > 0 and run.peak_bytes is None
    assert len(run.text.split()) == 5
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        measure_generation(q, FakeTokenizer(), "hello", max_new_tokens=0)


@pytest.mark.gpu
@needs_bnb
def test_generation_on_cuda_reports_the_allocator():
    q = quantize_model(tiny_llama(), "int8", "cuda")
    run = measure_generation(q, FakeTokenizer(), "hello", max_new_tokens=4)
    assert run.resident_bytes >= state_bytes(q) * 0.9 and run.peak_bytes >= run.resident_bytes
