"""utils.activations (and the shapes it counts for, utils.shapes): Korthikanti's formula, the Llama-block
count, the step peak, the two names of the width."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.activations import (
    ACTIVATION_PRECISIONS,
    activation_memory,
    decoder_activation_memory,
    training_step_peak,
)
from utils.shapes import SMOLLM2_135M, DecoderShape

# ---- activations -------------------------------------------------------------------------------------------


def test_korthikanti_formula():
    s, b, h, a, L = 2048, 1, 12288, 96, 96  # GPT-3 175B, micro-batch 1
    act = activation_memory(seq_len=s, batch_size=b, hidden_size=h, n_layers=L, n_heads=a)
    assert act.per_layer == 2_868_903_936  # s*b*h*(34 + 5*a*s/h) = 25,165,824 * (34 + 80): 2.87 GB per layer
    assert act.layers == L * act.per_layer and act.logits == 0 and act.total == act.layers
    flash = activation_memory(
        seq_len=s, batch_size=b, hidden_size=h, n_layers=L, n_heads=a, recompute="flash"
    )
    assert flash.per_layer == 855_638_016  # 34 sbh: the 5as/h term gone
    full = activation_memory(seq_len=s, batch_size=b, hidden_size=h, n_layers=L, n_heads=a, recompute="full")
    assert full.per_layer == 50_331_648  # 2 sbh: each layer's input only
    fp32 = activation_memory(seq_len=s, batch_size=b, hidden_size=h, n_layers=L, n_heads=a, bytes_per_value=4)
    assert fp32.per_layer == 2 * act.per_layer
    logits = activation_memory(
        seq_len=s, batch_size=2, hidden_size=h, n_layers=L, n_heads=a, vocab_size=50257
    )
    assert logits.logits == 4 * s * 2 * 50257


def test_smollm2_shape():
    assert SMOLLM2_135M.n_params == 134_515_008
    assert SMOLLM2_135M.head_dim == 64 and SMOLLM2_135M.kv_size == 192
    untied = DecoderShape(64, 160, 2, 4, 2, 500, tie_embeddings=False)
    assert untied.n_params == DecoderShape(64, 160, 2, 4, 2, 500).n_params + 500 * 64


def test_decoder_activation_per_layer_formula():
    """The docstring's closed forms: 8h + 2kv + 4I + a + 2 values per token (fused), 4h + as for attention
    (eager) instead of 2h + 2kv + a."""
    sh, s, b = SMOLLM2_135M, 512, 2
    h, kv, i, a = sh.hidden_size, sh.kv_size, sh.intermediate_size, sh.n_heads
    fused = decoder_activation_memory(sh, batch_size=b, seq_len=s)
    assert fused.per_layer == 4 * b * s * (8 * h + 2 * kv + 4 * i + a + 2)
    eager = decoder_activation_memory(sh, batch_size=b, seq_len=s, attention="eager")
    assert eager.per_layer == 4 * b * s * (10 * h + 4 * i + a * s + 2)
    auto = decoder_activation_memory(sh, batch_size=b, seq_len=s, precision="bf16-autocast")
    assert auto.per_layer == b * s * (30 * h + 4 * kv + 8 * i + 4 * a + 8)
    assert auto.logits == b * s * sh.vocab_size * (2 + 4) and fused.logits == b * s * sh.vocab_size * 8
    assert sum(r[1] for r in fused.layer_rows) * b * s == fused.per_layer


def test_training_step_peak_phases():
    sh = SMOLLM2_135M
    pk = training_step_peak(sh, batch_size=8, seq_len=512)
    assert pk.phase == "start of backward" and pk.gradients == 0
    assert pk.weights == 4 * sh.n_params and pk.optimizer == 8 * sh.n_params
    assert pk.loss_backward == 2 * 4 * 8 * 512 * sh.vocab_size
    kept = training_step_peak(sh, batch_size=8, seq_len=512, grads_kept=True)
    assert kept.total == pk.total + 4 * sh.n_params
    acts = decoder_activation_memory(sh, batch_size=8, seq_len=512)
    assert pk.activations == acts.total - 4 * 8 * 512 * sh.vocab_size  # returned logits freed before backward
    with_logits = training_step_peak(sh, batch_size=8, seq_len=512, logits_kept=True)
    assert with_logits.activations == acts.total
    tiny = DecoderShape(64, 160, 2, 4, 2, 50)  # almost no activations: the optimizer step is the peak
    assert training_step_peak(tiny, batch_size=1, seq_len=1).phase == "optimizer step"


def test_d_model_and_hidden_size_name_the_same_width():
    kw = dict(seq_len=16, batch_size=2, n_layers=3, n_heads=4)
    assert activation_memory(d_model=64, **kw) == activation_memory(hidden_size=64, **kw)
    assert SMOLLM2_135M.d_model == 576 and SMOLLM2_135M.d_ff == 1536
    for bad in (dict(), dict(d_model=64, hidden_size=64)):
        with pytest.raises(ValueError, match="d_model"):
            activation_memory(**kw, **bad)


def test_precision_spellings_map_to_one_autocast_format():
    assert ACTIVATION_PRECISIONS["bf16-autocast"] == ACTIVATION_PRECISIONS["bf16"] == "bf16"
    a = decoder_activation_memory(SMOLLM2_135M, batch_size=2, seq_len=64, precision="bf16")
    b = decoder_activation_memory(SMOLLM2_135M, batch_size=2, seq_len=64, precision="bf16-autocast")
    fp32 = decoder_activation_memory(SMOLLM2_135M, batch_size=2, seq_len=64)
    assert a == b and a.per_layer < fp32.per_layer  # 16-bit activations in the layers
    assert a.other > fp32.other  # plus autocast's 16-bit copies of the weights


def test_numpy_scalars_are_accepted():
    np = pytest.importorskip("numpy")
    kw = dict(seq_len=np.int64(16), batch_size=np.int32(2), n_layers=np.int64(3), n_heads=4)
    assert activation_memory(d_model=np.int64(64), **kw) == activation_memory(
        d_model=64, seq_len=16, batch_size=2, n_layers=3, n_heads=4
    )


@settings(max_examples=200, deadline=None)
@given(
    s=st.integers(1, 8192),
    b=st.integers(1, 64),
    heads=st.integers(1, 64),
    head_dim=st.integers(1, 256),
    layers=st.integers(1, 128),
    recompute=st.sampled_from(["none", "selective", "full"]),
)
def test_activations_grow_with_batch_and_shrink_with_recompute(s, b, heads, head_dim, layers, recompute):
    kw = dict(seq_len=s, hidden_size=heads * head_dim, n_layers=layers, n_heads=heads)
    one = activation_memory(batch_size=b, recompute=recompute, **kw)
    two = activation_memory(batch_size=2 * b, recompute=recompute, **kw)
    assert two.total == pytest.approx(2 * one.total)
    none = activation_memory(batch_size=b, **kw).total
    sel = activation_memory(batch_size=b, recompute="selective", **kw).total
    full = activation_memory(batch_size=b, recompute="full", **kw).total
    assert 0 < full <= sel <= none
