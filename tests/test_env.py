"""utils.env: probe and environment line, seeding, fast mode, cache folder, clear errors."""

import random

import numpy as np
import pytest
import torch

from utils import env


def test_seed_everything_makes_every_rng_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    env.seed_everything(123)
    a = draw()
    env.seed_everything(123)
    b = draw()
    assert a[:2] == b[:2]
    torch.testing.assert_close(a[2], b[2], rtol=0, atol=0)
    for bad in (-1, False, True, 1.5, "1"):  # False is not seed 0
        with pytest.raises(ValueError, match="seed"):
            env.seed_everything(bad)
    with pytest.raises(ValueError, match="deterministic"):
        env.seed_everything(0, deterministic="no")
    env.seed_everything(np.int64(5))  # a NumPy integer is a fine seed


@pytest.mark.parametrize("value, fast", [("1", True), ("true", True), ("0", False), ("", False)])
def test_fast_mode_switch(monkeypatch, value, fast):
    monkeypatch.setenv(env.FAST_ENV_VAR, value)
    assert env.is_fast() is fast
    assert env.fast_or_full(300, 20) == (20 if fast else 300)


def test_cache_dir_is_created_and_overridable(tmp_path, monkeypatch):
    monkeypatch.setenv(env.CACHE_ENV_VAR, str(tmp_path / "c"))
    d = env.cache_dir("tokenizers")
    assert d == tmp_path / "c" / "tokenizers" and d.is_dir()


def test_probe_reports_and_advises_offline_cpu(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = env.probe()
    assert report.versions["torch"] and report.hub is False
    assert any("offline" in line for line in report.advice)
    if report.device == "cpu":
        assert report.gpu_memory_bytes is None
        assert any("No GPU" in line for line in report.advice)
    line = env.environment_line(report)
    assert f"device: {report.device}" in line and "torch" in line


def test_advice_for_gpu_without_bf16_and_missing_packages():
    report = env.probe(check_hub=False)
    report.device, report.bf16 = "cuda", False
    report.versions = {**report.versions, "bitsandbytes": None}
    tips = env.advice(report)
    assert any("fp16 with a GradScaler" in t for t in tips)
    assert any("'bitsandbytes' is not installed" in t for t in tips)


def test_require_names_the_package_to_install():
    with pytest.raises(ImportError, match=r"pip install no-such-pkg"):
        env.require("no_such_pkg_xyz", "This demo", pip_name="no-such-pkg")
    assert env.require("json", "x").dumps([1]) == "[1]"


def test_progress_bar_prints_text_in_headless_runs(monkeypatch, capsys):
    monkeypatch.setenv(env.TEXT_PROGRESS_ENV_VAR, "1")
    for _ in env.progress_bar(range(3), desc="work", mininterval=0):
        pass
    assert "work" in capsys.readouterr().out


@pytest.mark.gpu
def test_cuda_probe_sees_memory_and_bf16_flag():
    report = env.probe(check_hub=False)
    assert report.device == "cuda" and report.gpu_memory_bytes > 2**30
    assert report.bf16 == torch.cuda.is_bf16_supported(including_emulation=False)
    assert report.bf16_how.startswith("native" if report.bf16 else "no")


def test_version_floors_match_pyproject_and_old_versions_are_named():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    floors = dict(re.findall(r'"([A-Za-z_-]+)>=([0-9.]+)"', text))
    assert {p: floors[p] for p in env.MIN_VERSIONS} == env.MIN_VERSIONS
    report = env.probe(check_hub=False)
    assert env.too_old(report.versions) == {}  # the pinned environment meets every floor
    report.versions = {**report.versions, "transformers": "4.57.1", "gguf": "0.17.1", "torch": "2.13.0+cpu"}
    assert env.too_old(report.versions) == {"transformers": ("4.57.1", "5.6")}  # a local suffix is still compared
    assert any("transformers 4.57.1 is older than the 5.6" in t for t in env.advice(report))
    assert "TOO OLD: transformers 4.57.1 < 5.6" in env.environment_line(report)
    assert env.too_old({"torch": "not-a-version", "numpy": "1.0"}) == {}  # unparsable or untracked: no guess
