"""Tests for utils/guards.py: the NaN/inf guard without a device sync per step (fused optimizers, CUDA) and
the cheap batch checks. The deferred path runs on the CPU too, with a fused AdamW (torch >= 2.4)."""

import pytest
import torch

import utils.train as train_module
from utils.env import seed_everything
from utils.guards import NonFiniteLossError, check_batch
from utils.models import build_model
from utils.train import TokenBatches, TrainConfig, train

V = 128


def _tokens():
    return torch.randint(4, 100, (97,), generator=torch.Generator().manual_seed(0)).repeat(40)


def _fused_everywhere(monkeypatch):
    """make_optimizer builds a fused AdamW on the CPU too: the deferred guard, as on a GPU."""
    original = train_module.make_optimizer

    def fused(model, cfg, device):
        opt = original(model, cfg, device)
        groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in opt.param_groups]
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=True)

    monkeypatch.setattr(train_module, "make_optimizer", fused)


def _run(device="cpu", **cfg):
    seed_everything(0)
    model = build_model("decoder", "tiny", vocab_size=V)
    base = dict(steps=12, batch_size=8, warmup_steps=0, log_every=4, eval_every=0, device=device, grad_clip=None)
    config = TrainConfig(**{**base, **cfg})
    return model, lambda **kw: train(model, TokenBatches(_tokens(), "clm", 8, 32, seed=1), config, progress=False, **kw)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_deferred_guard_stops_at_the_log_step_with_finite_weights(monkeypatch, device):
    if device == "cpu":
        _fused_everywhere(monkeypatch)
    model, run = _run(device, lr=1e6)
    with pytest.raises(NonFiniteLossError, match=r"step \d+: the loss is not finite.*cancelled on the device.*stopped at step 4"):
        run()
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad updates never landed


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_deferred_skip_mode_records_the_same_steps_as_the_immediate_check(monkeypatch, device):
    _, run = _run("cpu", lr=1e6, on_nonfinite="skip")
    immediate = run()
    if device == "cpu":
        _fused_everywhere(monkeypatch)
    model, run = _run(device, lr=1e6, on_nonfinite="skip")
    deferred = run()
    assert deferred.skipped_steps == immediate.skipped_steps and deferred.skipped_steps  # the same bad steps
    # the same logged means: bad steps left out (an interval with only bad steps logs nan in both)
    # (a GPU computes the first loss with other kernels than the CPU: equal to ~1e-5)
    torch.testing.assert_close(torch.tensor(deferred.loss), torch.tensor(immediate.loss), rtol=1e-4, atol=1e-4,
                               equal_nan=True)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_deferred_guard_changes_nothing_on_a_healthy_run(monkeypatch):
    _fused_everywhere(monkeypatch)
    _, run = _run(lr=3e-3)
    h = run()
    assert h.skipped_steps == [] and h.loss[-1] < h.loss[0]


def test_batch_checks_without_boolean_indexing():
    ids = torch.randint(0, V, (2, 8))
    labels = ids.clone()
    labels[:, :3] = -100
    check_batch({"input_ids": ids, "labels": labels}, 1, V, 64)  # -100 is allowed in labels
    labels[0, 5] = V
    with pytest.raises(ValueError, match=f"label id {V}"):
        check_batch({"input_ids": ids, "labels": labels}, 1, V, 64)
    check_batch({"input_ids": ids, "labels": torch.full_like(ids, -100)}, 1, V, 64)  # nothing to predict: fine
