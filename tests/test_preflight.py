"""utils.preflight: the MPS-versus-CPU loss check (with faked device losses) and the fits-the-device check
(with faked device memory figures), all on the CPU."""

import math

import pytest
import torch

from utils.env import seed_everything
from utils.memory import GiB, training_memory
from utils.models import build_model
from utils.preflight import (
    LOSS_RTOL,
    RESERVE_BYTES,
    SAFETY,
    check_mps,
    compare_losses,
    fit_batch,
    fits_device,
    step_bytes,
    step_losses,
)
from utils.train import TokenBatches


@pytest.fixture(scope="module")
def tiny():
    seed_everything(0)
    model = build_model("decoder", "tiny", vocab_size=64)
    tokens = torch.randint(0, 64, (4096,), generator=torch.Generator().manual_seed(0))
    data = TokenBatches(tokens, "clm", batch_size=4, seq_len=32, seed=0)
    return model, [data.batch(i) for i in range(3)]


# -- the MPS check: the decision, with faked device losses ---------------------------------------------

def test_agreeing_losses_keep_the_device():
    check = compare_losses([4.2, 4.1, 4.0], [4.2001, 4.1002, 3.9999], "mps")
    assert check.agree and check.device == "mps"
    assert check.max_rel_diff == pytest.approx(0.0002 / 4.1)
    assert "agree" in check.message


@pytest.mark.parametrize("device_losses, shown", [
    ([4.2, 4.3, 4.4], "1.00e-01"),  # a kernel that computes the wrong gradient: training goes up
    ([4.2, float("nan"), float("nan")], "non-finite"),  # NaN from the first update on
])
def test_disagreeing_losses_fall_back_to_the_cpu(device_losses, shown):
    check = compare_losses([4.2, 4.1, 4.0], device_losses, "mps")
    assert not check.agree and check.device == "cpu"
    assert shown in check.message and "training on the CPU instead" in check.message


def test_the_tolerance_is_the_stated_one():
    just_inside = 4.0 * (1 + 0.9 * LOSS_RTOL)
    just_outside = 4.0 * (1 + 1.1 * LOSS_RTOL)
    assert compare_losses([4.0], [just_inside], "mps").agree
    assert not compare_losses([4.0], [just_outside], "mps").agree


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same non-zero length"):
        compare_losses([1.0, 2.0], [1.0], "mps")
    with pytest.raises(ValueError, match="rtol=0"):
        compare_losses([1.0], [1.0], "mps", rtol=0)
    with pytest.raises(ValueError, match="cpu_losses"):
        compare_losses([math.nan], [1.0], "mps")


# -- the MPS check end to end, on the CPU ------------------------------------------------------------

def test_check_runs_only_where_mps_is_the_device(tiny):
    model, batches = tiny
    check = check_mps(model, batches, torch.device("cpu"))
    assert check.agree and check.device == "cpu" and check.device_losses == ()


def test_the_same_device_agrees_exactly_and_the_model_is_untouched(tiny):
    model, batches = tiny
    before = [p.detach().clone() for p in model.parameters()]
    check = check_mps(model, batches, "cpu", force=True)
    assert check.agree and check.max_rel_diff == 0.0  # the CPU is deterministic: bit-identical losses
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "the check trains copies"


def test_reduction_order_noise_stays_inside_the_tolerance(tiny, one_thread):
    """1 thread vs 2 threads sum in another order: a stand-in for a correct device's float differences."""
    model, batches = tiny
    single = step_losses(model, batches, "cpu")
    torch.set_num_threads(2)
    double = step_losses(model, batches, "cpu")
    assert compare_losses(single, double, "cpu (2 threads)").max_rel_diff < LOSS_RTOL / 10


def test_a_wrong_device_result_is_caught(tiny, monkeypatch):
    """Fake an MPS whose kernels are off by 1% in the loss: the check must hand back the CPU."""
    model, batches = tiny
    import utils.preflight as preflight

    real, calls = preflight.step_losses, []

    def faulty(model, batches, device, **kw):  # the first call is the CPU reference, the second the device
        calls.append(device)
        losses = real(model, batches, "cpu", **kw)
        return losses if len(calls) == 1 else [x * 1.01 for x in losses]

    monkeypatch.setattr(preflight, "step_losses", faulty)
    check = preflight.check_mps(model, batches, "cpu", force=True)
    assert not check.agree and check.device == "cpu"
    assert check.max_rel_diff == pytest.approx(0.01, rel=1e-6)


# -- does the step fit? with faked device figures --------------------------------------------------------

def _linear(per_sample, fixed=0.0):
    return lambda batch: fixed + per_sample * batch


def test_a_step_that_fits_keeps_its_batch():
    fit = fit_batch(_linear(1 * GiB, 2 * GiB), 16, free_bytes=80 * GiB, total_bytes=80 * GiB, device="cuda")
    assert fit.fits and fit.batch_size == 16 and fit.need_bytes == 18 * GiB
    assert "fits" in fit.message


def test_a_step_that_does_not_fit_is_halved_to_the_largest_that_does():
    # a T4 (15 GiB reported) with 14 GiB free: batch 16 needs 18 GiB; 8 needs 10 GiB (x1.2 + 0.5 GiB = 12.5)
    fit = fit_batch(_linear(1 * GiB, 2 * GiB), 16, free_bytes=14 * GiB, total_bytes=15 * GiB, device="cuda")
    assert fit.batch_size == 8 and fit.requested == 16
    assert 10 * GiB * SAFETY + RESERVE_BYTES <= 14 * GiB < 18 * GiB * SAFETY + RESERVE_BYTES
    assert "batch 16 -> 8" in fit.message


def test_a_small_step_is_shown_in_mib_not_as_zero_gib():
    fit = fit_batch(_linear(3 * 2**20), 2, free_bytes=14 * GiB, total_bytes=15 * GiB, device="cpu")
    assert "predicted step 6.0 MiB" in fit.message and "14.00 GiB free of 15.00 GiB" in fit.message


def test_nothing_fits_explains_instead_of_crashing():
    fit = fit_batch(_linear(1 * GiB, 30 * GiB), 8, free_bytes=14 * GiB, total_bytes=15 * GiB, device="cuda")
    assert not fit.fits and fit.batch_size == 0
    assert "even batch 1" in fit.message and "skip this cell" in fit.message


def test_fits_device_uses_the_reported_figures(monkeypatch):
    import utils.preflight as preflight

    monkeypatch.setattr(preflight, "device_memory", lambda device: (6 * GiB, 8 * GiB))
    assert fits_device(_linear(1 * GiB), 8, "cpu").batch_size == 4
    assert fits_device(_linear(1 * GiB), 8, "cpu", figures=(100 * GiB, 100 * GiB)).batch_size == 8
    monkeypatch.setattr(preflight, "device_memory", lambda device: None)
    unchecked = fits_device(_linear(1 * GiB), 8, "cpu")
    assert unchecked.batch_size == 8 and "unchecked" in unchecked.message


def test_the_real_cpu_reports_its_memory():
    free, total = __import__("utils.preflight", fromlist=["device_memory"]).device_memory("cpu")
    assert 0 < free <= total


def test_step_bytes_adds_model_states_and_activations(tiny):
    model, _ = tiny
    at = step_bytes(model, seq_len=32)
    n = sum(p.numel() for p in model.parameters())
    states = training_memory(n, precision="fp32", optimizer="adamw", activation_bytes_per_param=0).total
    assert at(1) > states == pytest.approx(16 * n)  # fp32 weights + grads + two AdamW moments
    assert at(8) - states == pytest.approx(2 * (at(4) - states))  # activations grow with the batch


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size=0"):
        fit_batch(_linear(1.0), 0, free_bytes=1e9)
    with pytest.raises(ValueError, match="safety=0.5"):
        fit_batch(_linear(1.0), 1, free_bytes=1e9, safety=0.5)
