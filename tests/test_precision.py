"""The T4 path (no native bf16: fp16 autocast + GradScaler) exercised on the CPU, and device-dependent sizing.

A Colab T4 has no bfloat16, so every training cell of the course falls back to fp16 with a gradient scaler
there. ``COURSE_NO_BF16=1`` makes any machine take that path, so CI runs the same code a T4 runs.
"""

import math

import pytest
import torch

from utils import env
from utils.env import seed_everything
from utils.models import build_model
from utils.train import TokenBatches, TrainConfig, grad_scaler, resolve_precision, train

V = 128


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setenv(env.NO_BF16_ENV_VAR, "1")


@pytest.fixture
def tokens():
    return torch.randint(4, 100, (97,), generator=torch.Generator().manual_seed(0)).repeat(40)


def _run(tokens, steps=12, **cfg):
    seed_everything(0)
    model = build_model("decoder", "tiny", vocab_size=V)
    data = TokenBatches(tokens, "clm", 8, 32, seed=1)
    cfg = TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup_steps=2, log_every=1, eval_every=0,
                      device="cpu", **cfg)
    return model, train(model, data, cfg, progress=False)


def test_no_bf16_makes_auto_take_the_t4_path(no_bf16):
    assert env.bf16_supported("cpu") is False
    assert resolve_precision("auto", "cpu") == "fp16"
    assert resolve_precision("auto", "cuda") == "fp16"  # whatever the GPU, as on a T4
    with pytest.raises(ValueError, match=r"precision='bf16'.*T4"):
        resolve_precision("bf16", "cpu")
    assert "fp16 path forced" in env.environment_line()


def test_without_the_flag_cpu_stays_fp32(monkeypatch):
    monkeypatch.delenv(env.NO_BF16_ENV_VAR, raising=False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert grad_scaler("fp32", "cpu") is None and grad_scaler("bf16", "cpu") is None
    assert isinstance(grad_scaler("fp16", "cpu"), torch.amp.GradScaler)


def test_train_under_no_bf16_runs_fp16_forward_and_steps_through_the_scaler(no_bf16, tokens, monkeypatch):
    seen = {"dtype": set(), "scaler_steps": 0}
    original_step = torch.amp.GradScaler.step

    def counting_step(self, optimizer, *args, **kwargs):
        seen["scaler_steps"] += 1
        return original_step(self, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", counting_step)
    seed_everything(0)
    model = build_model("decoder", "tiny", vocab_size=V)
    model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen["dtype"].add(o.dtype))
    cfg = TrainConfig(steps=12, batch_size=8, lr=3e-3, warmup_steps=2, log_every=1, eval_every=0, device="cpu")
    hist = train(model, TokenBatches(tokens, "clm", 8, 32, seed=1), cfg, progress=False)
    assert seen["dtype"] == {torch.float16}  # the matmuls ran in fp16 (autocast), not fp32
    assert seen["scaler_steps"] == 12  # every optimizer step went through the GradScaler
    assert hist.loss[-1] < hist.loss[0] - 0.5  # and it learns


def test_fp16_stays_close_to_fp32_on_the_same_seed(tokens, monkeypatch):
    monkeypatch.delenv(env.NO_BF16_ENV_VAR, raising=False)
    _, fp32 = _run(tokens, precision="fp32")
    _, fp16 = _run(tokens, precision="fp16")
    assert fp16.loss != fp32.loss  # a different code path really ran ...
    torch.testing.assert_close(torch.tensor(fp16.loss), torch.tensor(fp32.loss), rtol=0.02, atol=0.02)  # ... to ~1%


def test_an_overflowing_fp16_step_is_skipped_and_the_run_recovers(tokens, monkeypatch):
    """A scale too large for fp16 overflows the gradients: the scaler skips those steps and halves its scale
    (what a T4 does early in a run), and training goes on with finite weights."""
    monkeypatch.setattr(
        "utils.train.grad_scaler",
        lambda precision, device: torch.amp.GradScaler("cpu", init_scale=2.0**40) if precision == "fp16" else None,
    )
    model, hist = _run(tokens, steps=40, precision="fp16")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not math.isfinite(g) for g in hist.grad_norm[:3])  # the first steps overflowed ...
    assert hist.loss[-1] < hist.loss[0] - 0.5  # ... and the run still learned


@pytest.mark.parametrize("fast, cuda, expected", [(True, True, 3), (True, False, 3), (False, True, 9), (False, False, 5)])
def test_fast_or_full_sizes_by_mode_and_device(monkeypatch, fast, cuda, expected):
    monkeypatch.setenv(env.FAST_ENV_VAR, "1" if fast else "0")
    monkeypatch.setattr(env, "get_device", lambda prefer="auto": torch.device("cuda" if cuda else "cpu"))
    assert env.fast_or_full(5, 3, gpu=9) == expected
    assert env.fast_or_full(5, 3) == (3 if fast else 5)  # without gpu=, a GPU runs the full size


def test_environment_line_refuses_cpu_under_make_test_gpu(monkeypatch):
    monkeypatch.setenv(env.REQUIRE_GPU_ENV_VAR, "1")
    report = env.probe(check_hub=False)
    report.device = "cpu"
    with pytest.raises(RuntimeError, match="COURSE_REQUIRE_GPU=1.*no CUDA GPU"):
        env.environment_line(report)
