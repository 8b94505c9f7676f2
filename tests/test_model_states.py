"""utils.model_states (through utils.memory, as the notebooks import it): the lecture's figures, ZeRO's Fig. 1,
bad inputs across the memory modules, and properties."""


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.memory import (
    ADAM8BIT_QMAP_BYTES,
    BYTES_PER_DTYPE,
    GB,
    OPTIMIZERS,
    PRECISIONS,
    SMOLLM2_135M,
    DecoderShape,
    activation_memory,
    adam8bit_state_bytes,
    decoder_activation_memory,
    format_bytes,
    gpus_needed,
    memory_calculator,
    model_memory,
    model_state_bytes,
    training_memory,
    zero_memory_per_device,
)

# ---- the lecture ------------------------------------------------------------------------------------------


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




def test_numpy_scalars_are_accepted_and_returned_as_python_numbers():
    np = pytest.importorskip("numpy")
    assert model_memory(np.float64(1e9), "bf16") == 2 * GB
    assert type(model_memory(np.int64(10**9))) is int and model_memory(np.int64(10**9)) == 4 * GB
    assert training_memory(1, activation_bytes_per_param=0).weights == 4 and type(training_memory(1).weights) is int
    assert zero_memory_per_device(np.int64(7_500_000_000), np.int64(64), np.int64(3)) == pytest.approx(1.875e9)
    assert adam8bit_state_bytes(np.int32(4096)) == 2 * 4096 + 8 * 16
    assert model_state_bytes(np.array([10, 20])).weights == 4 * 30
    with pytest.raises(ValueError, match="stage"):
        zero_memory_per_device(1e9, 8, np.float64(1.0))
