"""Tests for utils/flops.py: FLOPs per token, MFU, budget cost (the GPU peaks: tests/test_hardware.py)."""

import pytest

from utils.flops import (
    PETAFLOP_S_DAY,
    achieved_flops,
    budget_cost,
    device_peak_flops,
    mfu,
    model_flops_per_token,
    training_flops_per_token,
)
from utils.models import build_model, count_parameters


def test_flops_per_token_is_6n_plus_the_attention_term():
    # GPT-2 small: N = 124,439,808, 12 layers, d_model 768, context 1024
    assert training_flops_per_token(124_439_808, 12, 768, 1024) == 6 * 124_439_808 + 12 * 12 * 768 * 1024
    assert training_flops_per_token(124_439_808, 12, 768, 1024) == 859_885_056
    with pytest.raises(ValueError, match="seq_len"):
        training_flops_per_token(10, 1, 8, 0)


def test_model_flops_per_token_reads_the_shape():
    model = build_model("decoder", "tiny", vocab_size=128)  # 2 layers, d_model 64
    assert count_parameters(model).total == 116_480
    assert model_flops_per_token(model, 32) == 748_032  # 6 x 116,480 + 12 x 2 layers x 64 x 32
    t5 = build_model("encoder-decoder", "tiny", vocab_size=128)  # 2 + 2 layers, 238,592 parameters
    assert model_flops_per_token(t5, 32) == 1_529_856  # 6 x 238,592 + 12 x 4 layers x 64 x 32


def test_mfu_and_achieved_flops():
    assert achieved_flops(1e9, 1e5) == 1e14
    assert mfu(1e9, 1e5, 989e12) == pytest.approx(1e14 / 989e12)
    assert mfu(1e9, 1e5, None) is None  # CPU: FLOP/s only
    assert device_peak_flops("cpu") is None


def test_budget_cost():
    one_day = budget_cost(PETAFLOP_S_DAY, 1e15, price_per_hour=2.0)
    assert one_day.seconds == pytest.approx(86_400)
    assert one_day.days == pytest.approx(1.0) and one_day.pfs_days == pytest.approx(1.0)
    assert one_day.cost == pytest.approx(48.0)
    assert budget_cost(1e18, 1e12).cost is None
    with pytest.raises(ValueError, match="flops_per_s"):
        budget_cost(1e18, 0)
    with pytest.raises(ValueError, match="price_per_hour"):
        budget_cost(1e18, 1e12, -1)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, True, "1e9"])
def test_non_finite_and_non_numbers_are_refused(bad):
    for call, argument in [
        (lambda: achieved_flops(1e9, bad), "tokens_per_s"),
        (lambda: mfu(1e9, 1e5, bad), "peak"),
        (lambda: budget_cost(bad, 1e12), "flops"),
        (lambda: budget_cost(1e18, 1e12, bad), "price_per_hour"),
        (lambda: training_flops_per_token(bad, 2, 64, 32), "n_params"),
    ]:
        with pytest.raises(ValueError, match=argument):
            call()


def test_numpy_scalars_are_accepted():
    np = pytest.importorskip("numpy")
    assert training_flops_per_token(np.int64(10), np.int64(1), np.int32(8), np.int64(4)) == 6 * 10 + 12 * 8 * 4
    assert budget_cost(np.float64(8.64e19), np.float32(1e15)).pfs_days == pytest.approx(1.0)
