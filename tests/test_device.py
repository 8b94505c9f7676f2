"""utils.device: device choice, and bf16 support that says native or emulated."""

import pytest
import torch

from utils import device, env


def test_get_device_auto_is_a_real_device():
    assert device.get_device().type in ("cuda", "mps", "cpu")
    assert device.get_device("cpu") == torch.device("cpu")


def test_get_device_rejects_unknown_choice_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"prefer='tpu'.*'auto', 'cuda', 'mps', 'cpu'"):
        device.get_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_asking_for_absent_cuda_is_explained():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        device.get_device("cuda")


def test_bf16_support_says_whether_the_cpu_emulates_it(monkeypatch):
    cpu = device.bf16_support("cpu")
    assert cpu.usable and device.bf16_usable("cpu") and device.bf16_supported is device.bf16_usable is env.bf16_usable
    assert cpu.native == device._cpu_bf16_native()
    assert cpu.how.startswith("native" if cpu.native else "emulated")
    monkeypatch.setattr(device, "_cpu_bf16_native", lambda: False)  # a CPU without AVX512-BF16 / AMX
    assert device.bf16_support("cpu") == device.Bf16Support(True, False, "emulated on the CPU (correct, slower than fp32)")
    report = env.probe(check_hub=False)
    if report.device == "cpu":
        assert report.bf16 is False and "bf16: emulated" in env.environment_line(report)
    monkeypatch.setenv(device.NO_BF16_ENV_VAR, "1")
    assert device.bf16_support("cpu") == device.Bf16Support(False, False, "off: COURSE_NO_BF16=1")
