"""Quantization from scratch: bit layouts of floating-point formats, absmax and zero-point INT8, and
block-wise 4-bit NormalFloat (NF4).

Pure torch, small and readable -- the real kernels live in ``bitsandbytes``; the tests check these
functions against their definitions and, where it is installed, against bitsandbytes.

* :func:`float_bits` splits a number stored in fp32 / fp16 / bf16 / fp8 into sign, exponent and fraction
  bits (read from the stored bytes with ``Tensor.view``).
* :func:`absmax_quantize` (symmetric, LLM.int8 paper): ``x_q = round(127 * x / max|x|)``, one scale per
  tensor or per row ("vector-wise").
* :func:`zeropoint_quantize` (asymmetric): ``scale = 255 / (max x - min x)``,
  ``zp = round(-min x * scale) - 128``, ``x_q = clamp(round(x * scale) + zp, -128, 127)``.
* :func:`nf4_quantize`: each block of 64 values is divided by its absmax and rounded to the nearest of the
  16 NF4 levels (QLoRA), which are quantiles of a normal distribution normalised to [-1, 1];
  :func:`fp4_levels` builds bitsandbytes' other 4-bit table, a float with 2 exponent bits and 1 fraction bit.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from utils.validate import check_choice, check_int, check_number

#: format -> (torch dtype, exponent bits, fraction bits). Each has 1 sign bit.
FLOAT_FORMATS: dict[str, tuple[torch.dtype, int, int]] = {
    "fp32": (torch.float32, 8, 23),
    "fp16": (torch.float16, 5, 10),
    "bf16": (torch.bfloat16, 8, 7),
    "fp8_e4m3": (torch.float8_e4m3fn, 4, 3),
    "fp8_e5m2": (torch.float8_e5m2, 5, 2),
}
_INT_VIEW = {32: torch.int32, 16: torch.int16, 8: torch.uint8}

#: The 16 NF4 levels, as in bitsandbytes' table (``bitsandbytes.functional.get_4bit_type("nf4")``).
NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
])  # fmt: skip

#: The offset QLoRA uses for the outermost quantile (so that the end levels are finite).
NF4_OFFSET = 0.9677083


def _check_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else repr(type(x).__name__)
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {got}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    # one NaN would make its whole block's scale meaningless, one inf would zero every other code: refuse
    bad = int((~torch.isfinite(x.detach().float())).sum())
    if bad:
        raise ValueError(
            f"{name} holds {bad} NaN or infinite value(s) (or values beyond float32's range); accepted: finite "
            "values only -- find where they come from (a diverged training step?) before quantizing"
        )
    return x


def _check_dim(dim, x: torch.Tensor):
    return check_int("dim", dim, minimum=-x.dim(), maximum=x.dim() - 1, allow_none=True)


def _check_scale(name: str, value) -> None:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return
    check_number(name, value)  # a plain number is fine too


# ---- bit layouts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatBits:
    """The stored bits of one number: sign, exponent and fraction as strings of 0/1, plus what they mean."""

    fmt: str
    sign: str
    exponent: str
    fraction: str
    value: float  # the number actually stored (after rounding to the format)

    @property
    def bits(self) -> str:
        return self.sign + self.exponent + self.fraction

    @property
    def hex(self) -> str:
        return f"0x{int(self.bits, 2):0{len(self.bits) // 4}X}"

    def __str__(self) -> str:
        return f"{self.sign} {self.exponent} {self.fraction}"


def float_bits(x, fmt: str = "fp32") -> FloatBits:
    """Sign, exponent and fraction bits of ``x`` (a Python number or one-element tensor) stored in ``fmt``.

    >>> float_bits(3.141592, "fp16").hex
    '0x4248'
    """
    check_choice("fmt", fmt, FLOAT_FORMATS)
    dtype, n_exp, n_frac = FLOAT_FORMATS[fmt]
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"x must hold exactly one number, got a tensor of shape {tuple(x.shape)}")
        t = x.detach().reshape(1).to(torch.float64)
    elif isinstance(x, numbers.Real) and not isinstance(x, bool):
        t = torch.tensor([float(x)], dtype=torch.float64)
    else:
        raise ValueError(f"x must be a number or a one-element tensor, got {type(x).__name__}")
    stored = t.to(dtype)
    width = 1 + n_exp + n_frac
    raw = int(stored.view(_INT_VIEW[width]).item()) & ((1 << width) - 1)  # two's complement -> unsigned
    bits = format(raw, f"0{width}b")
    return FloatBits(fmt, bits[0], bits[1 : 1 + n_exp], bits[1 + n_exp :], stored.to(torch.float64).item())


# ---- absmax (symmetric) INT8 -------------------------------------------------------------------------------


def absmax_quantize(x: torch.Tensor, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric INT8: ``x_q = round(127 * x / max|x|)``. Returns ``(x_q as int8, scale = 127 / max|x|)``.

    ``dim=None``: one scale for the whole tensor; ``dim=1`` on a matrix: one scale per row (the max is
    taken along ``dim``), LLM.int8's "vector-wise" quantization. An all-zero slice gets scale 1.
    """
    _check_tensor("x", x)
    dim = _check_dim(dim, x)
    x = x.float()
    amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    scale = 127.0 / torch.where(amax > 0, amax, torch.full_like(amax, 127.0))
    q = torch.round(x * scale).clamp(-127, 127).to(torch.int8)
    return q, scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Back to float: ``q / scale``."""
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
        raise ValueError(f"q must be an int8 tensor, got {getattr(q, 'dtype', type(q).__name__)}")
    _check_scale("scale", scale)
    return q.float() / scale


# ---- zero-point (asymmetric) INT8 --------------------------------------------------------------------------


def zeropoint_quantize(
    x: torch.Tensor, dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric INT8: map [min x, max x] onto [-128, 127]. Returns ``(x_q int8, scale, zero_point)``.

    ``scale = 255 / (max x - min x)``, ``zp = round(-min x * scale) - 128``,
    ``x_q = clamp(round(x * scale) + zp, -128, 127)``. A constant slice gets scale 1.
    """
    _check_tensor("x", x)
    dim = _check_dim(dim, x)
    x = x.float()
    if dim is None:
        lo, hi = x.amin(), x.amax()
    else:
        lo, hi = x.amin(dim=dim, keepdim=True), x.amax(dim=dim, keepdim=True)
    rng = hi - lo
    if not bool(torch.isfinite(rng).all()):  # e.g. -3e38 and 3e38: max - min overflows float32
        raise ValueError(
            f"x spans [{float(lo.min()):.3g}, {float(hi.max()):.3g}], a range that overflows float32, so no "
            "zero-point scale exists; accepted: a range below 3.4e38 (scale the tensor down first)"
        )
    scale = 255.0 / torch.where(rng > 0, rng, torch.full_like(rng, 255.0))
    zp = torch.round(-lo * scale) - 128
    q = torch.clamp(torch.round(x * scale) + zp, -128, 127).to(torch.int8)
    return q, scale, zp


def zeropoint_dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """Back to float: ``(q - zp) / scale``."""
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
        raise ValueError(f"q must be an int8 tensor, got {getattr(q, 'dtype', type(q).__name__)}")
    _check_scale("scale", scale)
    _check_scale("zero_point", zero_point)
    return (q.float() - zero_point) / scale


# ---- 4-bit NormalFloat ---------------------------------------------------------------------------------------


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """Rebuild the 16 NF4 levels from normal quantiles (QLoRA): 8 positive levels at the quantiles
    ``linspace(offset, 0.5, 9)[:-1]``, 7 negative at ``linspace(offset, 0.5, 8)[:-1]``, and 0; all divided
    by the largest. Asymmetric by one level so that 0 is exact."""
    offset = check_number("offset", offset, minimum=0.5, maximum=1.0, min_open=True, max_open=True)
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([pos, neg, torch.zeros(1, dtype=torch.float64)]).sort().values
    return (levels / levels.abs().max()).float()


def fp4_levels() -> torch.Tensor:
    """The 16 values of bitsandbytes' FP4, in code order (code = sign bit, 2 exponent bits, 1 fraction bit).

    A tiny float: exponent field ``e`` = 1, 2, 3 gives ``2**(4 - e) * (1 + m / 2)`` (8, 12 / 4, 6 / 2, 3),
    ``e = 0`` gives 0 and, for ``m = 1``, a subnormal 0.0625; everything divided by the largest, 12, so
    the levels lie in [-1, 1] like NF4's. Unlike NF4 they are spaced by powers of two, not by quantiles.
    """
    mags = []
    for code in range(8):
        e, m = code >> 1, code & 1
        mags.append(0.0625 * m if e == 0 else 2.0 ** (4 - e) * (1 + m / 2))
    mags = torch.tensor(mags) / 12
    return torch.cat([mags, -mags])


def _check_blocksize(blocksize) -> int:
    return check_int("blocksize", blocksize, minimum=1)


def nf4_quantize(x: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise NF4: flatten ``x``, cut it into blocks of ``blocksize`` (the last one zero-padded),
    divide each block by its absmax and round to the nearest NF4 level.

    Returns ``(codes, absmax)``: ``codes`` are level indices 0..15 (uint8, one per value -- real kernels
    pack two per byte), ``absmax`` one float per block.
    """
    _check_tensor("x", x)
    blocksize = _check_blocksize(blocksize)
    flat = x.detach().float().reshape(-1)
    pad = (-flat.numel()) % blocksize
    blocks = torch.nn.functional.pad(flat, (0, pad)).view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    normed = blocks / torch.where(absmax > 0, absmax, torch.ones_like(absmax))[:, None]
    levels = NF4_LEVELS.to(flat.device)  # the table follows the input (a CUDA tensor stays on its GPU)
    mids = (levels[1:] + levels[:-1]) / 2  # decision boundaries between neighbouring levels
    codes = torch.bucketize(normed, mids).to(torch.uint8)
    return codes.reshape(-1)[: flat.numel()], absmax


def nf4_dequantize(codes: torch.Tensor, absmax: torch.Tensor, shape, blocksize: int = 64) -> torch.Tensor:
    """Back to float: ``NF4_LEVELS[code] * absmax[block]``, reshaped to ``shape``."""
    blocksize = _check_blocksize(blocksize)
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8 or not codes.numel() or int(codes.max()) > 15:
        raise ValueError("codes must be a non-empty uint8 tensor of NF4 level indices 0..15 (from nf4_quantize)")
    if not isinstance(absmax, torch.Tensor) or not absmax.is_floating_point():
        raise ValueError(f"absmax must be a float tensor (from nf4_quantize), got {type(absmax).__name__}")
    n = codes.numel()
    pad = (-n) % blocksize
    if absmax.numel() != (n + pad) // blocksize:
        raise ValueError(
            f"absmax has {absmax.numel()} blocks, expected {(n + pad) // blocksize} for "
            f"{n} codes with blocksize={blocksize}"
        )
    if absmax.device != codes.device:
        raise ValueError(f"codes and absmax must be on one device, got {codes.device} and {absmax.device}")
    vals = NF4_LEVELS.to(codes.device)[codes.long()]
    vals = torch.nn.functional.pad(vals, (0, pad)).view(-1, blocksize) * absmax[:, None]
    try:
        return vals.reshape(-1)[:n].reshape(shape)
    except (RuntimeError, TypeError):
        raise ValueError(f"shape={shape!r} is not valid; accepted: a shape of {n} values") from None


def nf4_bits_per_value(blocksize: int = 64, absmax_bits: int = 32) -> float:
    """Storage cost of block-wise 4-bit: 4 bits per value + one absmax per block (64 -> 4.5 bits)."""
    return 4 + check_number("absmax_bits", absmax_bits, minimum=0) / _check_blocksize(blocksize)
