"""utils.memory: the lecture's figures, ZeRO's Fig. 1, Korthikanti's formula, bad inputs, and properties."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.memory import (
    ADAM8BIT_QMAP_BYTES,
    BYTES_PER_DTYPE,
    GB,
    GPT3_SHAPES,
    GPU_TABLE,
    GPUS,
    OPTIMIZERS,
    PRECISIONS,
    SMOLLM2_135M,
    TASKS,
    DecoderShape,
    activation_memory,
    adam8bit_state_bytes,
    decoder_activation_memory,
    format_bytes,
    gpu_estimate,
    gpus_needed,
    memory_calculator,
    model_memory,
    model_state_bytes,
    task_memory,
    training_memory,
    training_step_peak,
    zero_memory_per_device,
)

# ---- the lecture ------------------------------------------------------------------------------------------


def test_module_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import utils.memory, utils.flops; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_lecture_store_figures():
    assert model_memory(1e9) == 4 * GB
    assert model_memory(1e9, "bf16") == model_memory(1e9, "fp16") == 2 * GB
    assert model_memory(1e9, "int8") == 1 * GB
    assert model_memory(1e9, "nf4") == 0.5 * GB


def test_lecture_training_figures():
    one_b = training_memory(1e9)
    assert (one_b.weights, one_b.gradients, one_b.optimizer, one_b.activations) == (4e9, 4e9, 8e9, 8e9)
    assert one_b.total == 24 * GB
    assert training_memory(175e9).total == pytest.approx(4_200 * GB)
    assert training_memory(500e9).total == pytest.approx(12_000 * GB)


def test_16_18_24_bytes_accountings():
    per_param = lambda **kw: training_memory(1, activation_bytes_per_param=0, **kw).total
    assert per_param(precision="fp32") == 16  # + 8 activations = the lecture's 24
    assert training_memory(1, precision="fp32").total == 24
    zero = training_memory(1, precision="mixed", activation_bytes_per_param=0)
    assert (zero.weights, zero.gradients, zero.optimizer) == (2, 2, 12)  # ZeRO: K = 12
    hf = training_memory(1, precision="mixed-hf", activation_bytes_per_param=0)
    assert (hf.weights, hf.gradients, hf.optimizer, hf.total) == (6, 4, 8, 18)


def test_optimizer_accountings():
    states = lambda opt: training_memory(1, optimizer=opt, activation_bytes_per_param=0).optimizer
    assert states("adam") == states("adamw") == 8
    assert states("sgd") == 4
    assert states("adam8bit") == 2 + 8 / 256
    assert training_memory(1, precision="mixed", optimizer="sgd", activation_bytes_per_param=0).optimizer == 8


def test_adam8bit_exact_rules():
    assert adam8bit_state_bytes(4095) == 8 * 4095  # small tensors keep 32-bit states
    assert adam8bit_state_bytes(4096) == 2 * 4096 + 8 * 16
    assert adam8bit_state_bytes(4097) == 2 * 4097 + 8 * 17  # a partial block has its own scale
    got = model_state_bytes([10, 5000], optimizer="adam8bit")
    assert got.optimizer == 80 + 2 * 5000 + 8 * 20 + ADAM8BIT_QMAP_BYTES
    assert got.weights == 4 * 5010 and got.gradients == 4 * 5010
    assert model_state_bytes([10, 20], optimizer="adam8bit").optimizer == 8 * 30  # no 8-bit tensor: no maps


def test_model_state_bytes_matches_training_memory():
    numels = [3, 500, 7000]
    for precision in PRECISIONS:
        for opt in ("adam", "adamw", "sgd"):
            assert model_state_bytes(numels, precision=precision, optimizer=opt) == training_memory(
                sum(numels), precision=precision, optimizer=opt, activation_bytes_per_param=0
            )


def test_training_memory_as_dict_and_add():
    m = training_memory(10)
    assert m.as_dict() == {"weights": 40, "gradients": 40, "optimizer": 80, "activations": 80, "total": 240}
    assert (m + m).total == 480
    assert m.model_states == 160


# ---- ZeRO ------------------------------------------------------------------------------------------------


def test_zero_paper_figure_1():
    got = [zero_memory_per_device(7.5e9, 64, stage) / GB for stage in range(4)]
    assert got[0] == pytest.approx(120)
    assert round(got[1], 1) == 31.4
    assert round(got[2], 1) == 16.6
    assert round(got[3], 1) == 1.9


def test_zero_one_device_is_plain_data_parallel():
    assert {zero_memory_per_device(1e9, 1, s) for s in range(4)} == {16e9}


# ---- activations -------------------------------------------------------------------------------------------


def test_korthikanti_formula():
    s, b, h, a, L = 2048, 1, 12288, 96, 96  # GPT-3 175B, micro-batch 1
    act = activation_memory(seq_len=s, batch_size=b, hidden_size=h, n_layers=L, n_heads=a)
    assert act.per_layer == s * b * h * (34 + 5 * a * s / h)
    assert act.layers == L * act.per_layer and act.logits == 0 and act.total == act.layers
    flash = activation_memory(
        seq_len=s, batch_size=b, hidden_size=h, n_layers=L, n_heads=a, recompute="flash"
    )
    assert flash.per_layer == 34 * s * b * h
    full = activation_memory(seq_len=s, batch_size=b, hidden_size=h, n_layers=L, n_heads=a, recompute="full")
    assert full.per_layer == 2 * s * b * h
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


# ---- GPUs --------------------------------------------------------------------------------------------------


def test_course_gpus_are_rows_of_the_hardware_table():
    assert list(GPUS) == ["T4", "A100-40", "A100-80", "H100"]
    assert all(GPUS[k] is GPU_TABLE[k] for k in GPUS)
    assert GPUS["T4"].memory_gb == 16 and not GPUS["T4"].bf16  # the label of the table headers


def test_gpus_needed_examples():
    assert gpus_needed(1e9, "A100-80", "pretrain") == 1  # 24 GB
    assert gpus_needed(1e9, "T4", "pretrain") == 2  # 24 GB over 14.8e9 usable bytes per T4
    assert gpus_needed(1e9, "T4", "store") == 1
    # 4,200 GB over (81,090 MiB seen by torch - 1 GiB reserve) = 83.96e9 bytes per H100: 50.03 -> 51
    assert gpus_needed(175e9, "H100", "pretrain") == 51
    assert gpus_needed(175e9, "H100", "pretrain", reserve_bytes=0) == 50  # 4,200 / 85.03 = 49.4
    assert gpus_needed(175e9, "A100-80", "store", precision="fp16") == 5  # 350 GB / 83.9 GB = 4.2
    assert gpus_needed(20e9, "A100-80", "store") == 1  # 80 GB (74.5 GiB) fits an "80GB" (80 GiB) card
    est = gpu_estimate(7e9, "A100-40", "finetune")
    assert est.bytes_needed == 16 * 7e9 and est.n_gpus == 3
    assert task_memory(1e9, "store", precision="mixed") == 2 * GB


def test_gpu_estimate_uses_the_usable_bytes_exactly():
    usable = 81_049 * 2**20 - 2**30  # A100 80GB: torch's total_memory less the 1 GiB reserve
    assert gpu_estimate(1e9, "A100-80", "store").gpu_bytes == usable
    assert gpus_needed(usable / 4, "A100-80", "store") == 1  # fp32: exactly the usable bytes fit
    assert gpus_needed(usable / 4 * (1 + 1e-6), "A100-80", "store") == 2
    assert gpus_needed(1e9, "L4", "pretrain") == 2  # any card of the hardware table, not only GPUS


def test_memory_calculator():
    out = memory_calculator("GPT-3 175B", precision="mixed", batch_size=1, seq_len=2048, gpu="H100")
    assert out["weights"] == 2 * 174_600e6 and out["optimizer"] == 12 * 174_600e6
    assert out["total"] == pytest.approx(
        out["weights"] + out["gradients"] + out["optimizer"] + out["activations"]
    )
    assert out["total"] == pytest.approx(3_069.43e9, rel=1e-5)
    assert out["n_gpus"] == 37  # 3,069 GB / 83.96e9 usable bytes per H100 = 36.6
    assert len(GPT3_SHAPES) == 8


def test_format_bytes():
    assert format_bytes(24e9) == "24.0 GB"
    assert format_bytes(4_200e9, digits=0) == "4,200 GB"
    assert format_bytes(2**30, "GiB") == "1.0 GiB"


# ---- bad inputs ------------------------------------------------------------------------------------------

BAD_CALLS = [
    (lambda: model_memory(0), "n_params"),
    (lambda: model_memory(-5), "n_params"),
    (lambda: model_memory(float("nan")), "n_params"),
    (lambda: model_memory("1e9"), "n_params"),
    (lambda: model_memory(True), "n_params"),
    (lambda: model_memory(1e9, "fp64"), "dtype"),
    (lambda: training_memory(1e9, precision="fp64"), "precision"),
    (lambda: training_memory(1e9, optimizer="lion"), "optimizer"),
    (lambda: training_memory(1e9, activation_bytes_per_param=-1), "activation_bytes_per_param"),
    (lambda: training_memory(0), "n_params"),
    (lambda: activation_memory(seq_len=0, batch_size=1, hidden_size=8, n_layers=1, n_heads=1), "seq_len"),
    (lambda: activation_memory(seq_len=8, batch_size=-1, hidden_size=8, n_layers=1, n_heads=1), "batch_size"),
    (
        lambda: activation_memory(
            seq_len=8, batch_size=1, hidden_size=8, n_layers=1, n_heads=1, recompute="x"
        ),
        "recompute",
    ),
    (lambda: activation_memory(seq_len=8, batch_size=1, hidden_size=8, n_layers=0, n_heads=1), "n_layers"),
    (
        lambda: activation_memory(
            seq_len=8, batch_size=1, hidden_size=8, n_layers=1, n_heads=1, vocab_size=0
        ),
        "vocab_size",
    ),
    (lambda: activation_memory(seq_len=8.5, batch_size=1, hidden_size=8, n_layers=1, n_heads=1), "seq_len"),
    (
        lambda: decoder_activation_memory(SMOLLM2_135M, batch_size=1, seq_len=8, attention="flash2"),
        "attention",
    ),
    (lambda: decoder_activation_memory(SMOLLM2_135M, batch_size=1, seq_len=8, precision="int8"), "precision"),
    (lambda: decoder_activation_memory("smollm2", batch_size=1, seq_len=8), "shape"),
    (lambda: DecoderShape(64, 160, 2, 5, 1, 500), "n_heads"),
    (lambda: DecoderShape(64, 160, 0, 4, 2, 500), "n_layers"),
    (lambda: zero_memory_per_device(1e9, 8, 4), "stage"),
    (lambda: zero_memory_per_device(1e9, 8, -1), "stage"),
    (lambda: zero_memory_per_device(1e9, 8, 1.0), "stage"),
    (lambda: zero_memory_per_device(1e9, 8, True), "stage"),
    (lambda: zero_memory_per_device(1e9, 0, 1), "n_devices"),
    (lambda: zero_memory_per_device(1e9, 8, 1, optimizer_bytes=-1), "optimizer_bytes"),
    (lambda: zero_memory_per_device(0, 8, 1), "n_params"),
    (lambda: gpus_needed(1e9, "V100"), "gpu"),
    (lambda: gpus_needed(1e9, "H100", "inference"), "task"),
    (lambda: gpus_needed(1e9, "H100", "store", precision="fp64"), "precision"),
    (lambda: gpus_needed(-1, "H100"), "n_params"),
    (lambda: model_state_bytes([], optimizer="adam"), "param_numels"),
    (lambda: model_state_bytes([0, 3]), "param_numels"),
    (lambda: model_state_bytes([3], optimizer="adagrad"), "optimizer"),
    (lambda: memory_calculator("GPT-5"), "model"),
    (lambda: format_bytes(1, "PB"), "unit"),
]


@pytest.mark.parametrize(
    "call, argument", BAD_CALLS, ids=[f"{i}-{arg}" for i, (_, arg) in enumerate(BAD_CALLS)]
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_error_message_lists_valid_values():
    with pytest.raises(ValueError) as info:
        model_memory(1e9, "fp64")
    assert "'fp64'" in str(info.value) and all(d in str(info.value) for d in BYTES_PER_DTYPE)
    with pytest.raises(ValueError) as info:
        zero_memory_per_device(1e9, 8, 4)
    assert "(0, 1, 2, 3)" in str(info.value)


# ---- properties ------------------------------------------------------------------------------------------

params = st.floats(min_value=1.0, max_value=1e13, allow_nan=False, allow_infinity=False)
devices = st.integers(min_value=1, max_value=4096)
act_bytes = st.floats(min_value=0.0, max_value=64.0)


@settings(max_examples=200, deadline=None)
@given(
    n=params,
    k=st.floats(min_value=0.01, max_value=1e3),
    precision=st.sampled_from(sorted(PRECISIONS)),
    optimizer=st.sampled_from(sorted(OPTIMIZERS)),
    act=act_bytes,
)
def test_training_memory_is_linear_in_parameters(n, k, precision, optimizer, act):
    one = training_memory(n, precision=precision, optimizer=optimizer, activation_bytes_per_param=act)
    scaled = training_memory(n * k, precision=precision, optimizer=optimizer, activation_bytes_per_param=act)
    for part in ("weights", "gradients", "optimizer", "activations", "total"):
        assert getattr(scaled, part) == pytest.approx(k * getattr(one, part), rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    n=params,
    dtype=st.sampled_from(sorted(BYTES_PER_DTYPE)),
    precision=st.sampled_from(sorted(PRECISIONS)),
    optimizer=st.sampled_from(sorted(OPTIMIZERS)),
    act=act_bytes,
)
def test_memory_is_never_negative(n, dtype, precision, optimizer, act):
    assert model_memory(n, dtype) > 0
    m = training_memory(n, precision=precision, optimizer=optimizer, activation_bytes_per_param=act)
    assert min(m.weights, m.gradients, m.optimizer, m.activations) >= 0 and m.total > 0
    assert m.total >= model_memory(n, dtype="bf16")  # training always holds at least 16-bit weights


@settings(max_examples=300, deadline=None)
@given(n=params, n_devices=devices, stage=st.integers(0, 2), k=st.floats(0.0, 64.0))
def test_zero_higher_stage_never_needs_more(n, n_devices, stage, k):
    lower = zero_memory_per_device(n, n_devices, stage, k)
    higher = zero_memory_per_device(n, n_devices, stage + 1, k)
    assert higher <= lower * (1 + 1e-12)


@settings(max_examples=300, deadline=None)
@given(
    n=params, n_devices=devices, extra=st.integers(1, 1024), stage=st.integers(0, 3), k=st.floats(0.0, 64.0)
)
def test_zero_more_devices_never_need_more(n, n_devices, extra, stage, k):
    fewer = zero_memory_per_device(n, n_devices, stage, k)
    more = zero_memory_per_device(n, n_devices + extra, stage, k)
    assert 0 < more <= fewer * (1 + 1e-12)


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


@settings(max_examples=100, deadline=None)
@given(n=params, gpu=st.sampled_from(sorted(GPUS)), task=st.sampled_from(TASKS))
def test_gpus_needed_hold_the_bytes(n, gpu, task):
    est = gpu_estimate(n, gpu, task)
    assert est.n_gpus >= 1
    assert est.n_gpus * est.gpu_bytes >= est.bytes_needed * (1 - 1e-9)
    assert (est.n_gpus - 1) * est.gpu_bytes < est.bytes_needed or est.n_gpus == 1
    assert gpus_needed(n, gpu, "store") <= gpus_needed(n, gpu, "finetune") <= gpus_needed(n, gpu, "pretrain")


def test_format_table():
    from utils.memory import format_table

    assert format_table(["a", "bb"], [["x", 1], ["yyy", 22]]) == "a    bb\n---  --\nx     1\nyyy  22"
    with pytest.raises(ValueError, match="rows"):
        format_table(["a"], [[1, 2]])
