"""utils.quant: bit layouts against the lecture and torch, absmax / zero-point INT8 against their
definitions and bitsandbytes, NF4 against bitsandbytes' table and kernels, and bad inputs."""

import math

import pytest
import torch

from utils.quant import (
    FLOAT_FORMATS,
    NF4_LEVELS,
    absmax_dequantize,
    absmax_quantize,
    float_bits,
    fp4_levels,
    nf4_bits_per_value,
    nf4_dequantize,
    nf4_levels,
    nf4_quantize,
    zeropoint_dequantize,
    zeropoint_quantize,
)

# ---- bit layouts --------------------------------------------------------------------------------------------


def test_pi_as_in_the_lecture():
    b = float_bits(3.141592, "fp32")
    assert b.fraction == "10010010000111111011000"  # the lecture's 23 fraction bits
    assert b.value == 3.1415920257568359375 and b.hex == "0x40490FD8"
    assert float_bits(math.pi, "fp32").hex == "0x40490FDB"
    assert float_bits(math.pi, "fp32").value == 3.1415927410125732
    assert float_bits(3.141592, "fp16").hex == "0x4248" and float_bits(3.141592, "fp16").value == 3.140625
    assert float_bits(3.141592, "bf16").value == 3.140625 and float_bits(3.141592, "bf16").hex == "0x4049"


@pytest.mark.parametrize("fmt", list(FLOAT_FORMATS))
def test_layout_widths_and_decoding(fmt):
    dtype, n_exp, n_frac = FLOAT_FORMATS[fmt]
    assert 1 + n_exp + n_frac == torch.finfo(dtype).bits
    for x in (1.0, -2.5, 0.3, 100.0):
        b = float_bits(x, fmt)
        assert (len(b.sign), len(b.exponent), len(b.fraction)) == (1, n_exp, n_frac)
        # decode a normal number by hand: (-1)^s * 2^(e - bias) * (1 + f / 2^n_frac)
        bias = 2 ** (n_exp - 1) - 1
        e, f = int(b.exponent, 2), int(b.fraction, 2)
        assert e > 0
        value = (-1) ** int(b.sign) * 2.0 ** (e - bias) * (1 + f / 2**n_frac)
        assert value == b.value == torch.tensor(x).to(dtype).double().item()


def test_bf16_is_truncated_fp32():
    for x in (3.141592, -1e30, 123.456):
        assert float_bits(x, "fp32").bits[:9] == float_bits(x, "bf16").bits[:9]  # sign + same 8 exponent bits


def test_float_bits_accepts_tensors_and_rejects_bad_args():
    assert float_bits(torch.tensor(1.0), "fp16").hex == "0x3C00"
    with pytest.raises(ValueError, match="fmt='fp64'"):
        float_bits(1.0, "fp64")
    with pytest.raises(ValueError, match="one number"):
        float_bits(torch.ones(2))
    with pytest.raises(ValueError, match="x must be"):
        float_bits("1.0")


# ---- absmax and zero-point ------------------------------------------------------------------------------------


def test_absmax_definition():
    x = torch.tensor([1.2, -0.5, -4.3, 1.2, 3.1, 0.8, 2.4, 5.4])
    q, scale = absmax_quantize(x)
    assert q.dtype == torch.int8 and q.tolist() == [28, -12, -101, 28, 73, 19, 56, 127]
    assert scale.item() == pytest.approx(127 / 5.4)
    assert (absmax_dequantize(q, scale) - x).abs().max() <= 0.5 / scale + 1e-6


def test_absmax_rowwise_and_zero_rows():
    torch.manual_seed(0)
    x = torch.randn(5, 16)
    x[2] = 0
    q, scale = absmax_quantize(x, dim=1)
    assert scale.shape == (5, 1)
    assert (q.abs().amax(dim=1)[[0, 1, 3, 4]] == 127).all() and (q[2] == 0).all()
    assert torch.allclose(absmax_dequantize(q, scale), x, atol=(x.abs().max() / 254).item() + 1e-6)


def test_zeropoint_definition_and_range():
    x = torch.tensor([1.2, -0.5, -4.3, 1.2, 3.1, 0.8, 2.4, 5.4])
    q, scale, zp = zeropoint_quantize(x)
    assert scale.item() == pytest.approx(255 / 9.7)
    assert zp.item() == round(4.3 * 255 / 9.7) - 128
    assert q.min().item() == -128 and q.max().item() == 127
    assert (zeropoint_dequantize(q, scale, zp) - x).abs().max() <= 1 / scale + 1e-6
    qr, sr, zr = zeropoint_quantize(torch.stack([x, x + 10, torch.zeros(8)]), dim=1)
    assert sr.shape == zr.shape == (3, 1) and torch.equal(qr[0], q)


def test_zeropoint_beats_absmax_on_one_sided_data():
    torch.manual_seed(0)
    x = torch.rand(1000)  # all positive: absmax wastes the negative half of the codes
    e_abs = (absmax_dequantize(*absmax_quantize(x)) - x).abs().mean()
    e_zp = (zeropoint_dequantize(*zeropoint_quantize(x)) - x).abs().mean()
    assert e_zp < 0.6 * e_abs


def test_int8_matches_bitsandbytes_vectorwise():
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
    from utils.env import import_bitsandbytes

    F = import_bitsandbytes().functional
    torch.manual_seed(0)
    x = torch.randn(8, 64)
    q_bnb, row_absmax, _ = F.int8_vectorwise_quant(x)
    q, scale = absmax_quantize(x, dim=1)
    assert torch.allclose(127 / scale.squeeze(1), row_absmax)
    assert (q.int() - q_bnb.int()).abs().max() <= 1  # bnb may round a tie the other way
    assert (q == q_bnb).float().mean() > 0.99


@pytest.mark.parametrize("fn", [absmax_quantize, zeropoint_quantize])
def test_quantizers_reject_bad_args(fn):
    with pytest.raises(ValueError, match="x must be a floating-point"):
        fn(torch.arange(4))
    with pytest.raises(ValueError, match="x must be a floating-point"):
        fn([1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        fn(torch.empty(0))
    with pytest.raises(ValueError, match=r"dim=2 is not valid; accepted: an int >= -2 and <= 1 or None"):
        fn(torch.ones(2, 2), dim=2)


def test_dequantizers_reject_non_int8():
    with pytest.raises(ValueError, match="q must be an int8"):
        absmax_dequantize(torch.ones(2), torch.tensor(1.0))
    with pytest.raises(ValueError, match="q must be an int8"):
        zeropoint_dequantize(torch.ones(2), torch.tensor(1.0), torch.tensor(0.0))


# ---- NF4 -----------------------------------------------------------------------------------------------------


def test_nf4_levels_are_normal_quantiles():
    assert NF4_LEVELS.numel() == 16 and NF4_LEVELS[0] == -1 and NF4_LEVELS[-1] == 1 and 0 in NF4_LEVELS
    assert torch.allclose(nf4_levels(), NF4_LEVELS, atol=1e-6)
    assert (NF4_LEVELS.diff() > 0).all()


def test_nf4_levels_match_bitsandbytes_table():
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
    from utils.env import import_bitsandbytes

    table = import_bitsandbytes().functional.get_4bit_type("nf4", device="cpu")
    assert torch.allclose(table, NF4_LEVELS)


def test_nf4_roundtrip_and_padding():
    torch.manual_seed(0)
    x = torch.randn(3, 50)  # 150 values: 3 blocks of 64, the last one padded
    codes, absmax = nf4_quantize(x)
    assert codes.shape == (150,) and absmax.shape == (3,) and int(codes.max()) <= 15
    back = nf4_dequantize(codes, absmax, x.shape)
    assert back.shape == x.shape
    # every value lands on the nearest level of its block
    flat = torch.nn.functional.pad(x.reshape(-1), (0, 42)).view(3, 64)
    nearest = (flat[..., None] / absmax[:, None, None] - NF4_LEVELS).abs().argmin(-1).reshape(-1)[:150]
    assert torch.equal(codes.long(), nearest)
    assert (back - x).abs().max() < 0.2 * x.abs().max()
    assert nf4_bits_per_value() == 4.5 and nf4_bits_per_value(64, 8) == 4.125


def test_nf4_matches_bitsandbytes():
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
    from utils.env import import_bitsandbytes

    F = import_bitsandbytes().functional
    torch.manual_seed(0)
    x = torch.randn(64, 128)
    packed, state = F.quantize_4bit(x, blocksize=64, quant_type="nf4")
    ref = F.dequantize_4bit(packed, state)
    codes, absmax = nf4_quantize(x)
    p = packed.flatten()  # two codes per byte, the first one in the high nibble
    assert torch.equal(torch.stack([p >> 4, p & 15], dim=1).flatten(), codes)
    assert torch.equal(absmax, state.absmax)
    assert torch.equal(nf4_dequantize(codes, absmax, x.shape), ref)  # bit for bit


def test_fp4_levels_match_bitsandbytes_table():
    levels = fp4_levels()
    assert levels.numel() == 16 and levels.abs().max() == 1 and levels[1] == 0.0625 / 12
    assert torch.equal(levels[8:], -levels[:8])  # the sign bit is the top bit of the code
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
    from utils.env import import_bitsandbytes

    assert torch.equal(levels, import_bitsandbytes().functional.get_4bit_type("fp4", device="cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nf4_stays_on_the_input_device():
    x = torch.randn(300, device="cuda")
    codes, absmax = nf4_quantize(x)
    assert codes.device.type == absmax.device.type == "cuda"
    back = nf4_dequantize(codes, absmax, x.shape)
    assert back.device.type == "cuda"
    assert torch.equal(back.cpu(), nf4_dequantize(*nf4_quantize(x.cpu()), x.shape))


def test_nf4_rejects_bad_args():
    with pytest.raises(ValueError, match="blocksize"):
        nf4_quantize(torch.ones(8), blocksize=0)
    with pytest.raises(ValueError, match="x must be"):
        nf4_quantize(torch.ones(8, dtype=torch.int64))
    codes, absmax = nf4_quantize(torch.ones(8))
    with pytest.raises(ValueError, match="absmax has"):
        nf4_dequantize(codes, torch.ones(2), (8,))
    with pytest.raises(ValueError, match="codes must be"):
        nf4_dequantize(torch.full((8,), 16, dtype=torch.uint8), absmax, (8,))
    with pytest.raises(ValueError, match="offset"):
        nf4_levels(1.5)
    with pytest.raises(ValueError, match="one device"):
        nf4_dequantize(codes, absmax.to("meta"), (8,))
