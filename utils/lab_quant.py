"""Lab 2 (quantize a model): the cases, the checks and the hints, built on :mod:`utils.labs`.

The learner writes absmax INT8 (per tensor or per slice), zero-point INT8 and block-wise NF4 quantizers,
checked against :mod:`utils.quant` on random and adversarial tensors (an outlier, all zeros, a constant, a
block of one value, negative values only), then ``quantize_linears(model, method)`` (simulated quantization
of a real model's linear layers) and ``perplexity(model, ids)``. Nothing here returns an expected value.
"""

from __future__ import annotations

import copy

import torch

from utils import quant
from utils.env import has_package, import_bitsandbytes
from utils.labs import Result, case, check_function, close
from utils.memory import DecoderShape
from utils.memory_measure import llama_from_shape

#: The methods of ``quantize_linears``: int8 = absmax with one scale per output row; nf4 = blocks of 64.
METHODS = ("int8", "nf4")
NF4_BLOCKSIZE = 64
#: The small Llama the model-level checks run on (the real measurement uses SmolLM2-135M).
CHECK_SHAPE = DecoderShape(hidden_size=64, intermediate_size=128, n_layers=2, n_heads=4, n_kv_heads=2,
                           vocab_size=256)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed))


def _with_outlier(n: int, at: int, value: float, seed: int) -> torch.Tensor:
    x = _randn(n, seed=seed)
    x[at] = value
    return x


def _zero_row() -> torch.Tensor:
    x = _randn(6, 32, seed=5)
    x[2] = 0
    return x


def _label(c) -> str:
    return c.label if c is not None else ""


def _reduce(c, op) -> torch.Tensor:
    """``op`` (amax / amin) of a case's tensor, over all of it or along the case's ``dim``."""
    x, dim = c.args[0], c.kwargs.get("dim")
    return op(x) if dim is None else op(x, dim=dim, keepdim=True)


# ---- exercise 1: absmax ------------------------------------------------------------------------------------


def absmax_cases() -> list:
    return [
        case(_randn(1000, seed=1), label="1,000 random normal values"),
        case(_randn(16, 64, seed=2), dim=1, label="a 16 x 64 matrix, one scale per row (dim=1)"),
        case(_randn(16, 64, seed=3), dim=0, label="a 16 x 64 matrix, one scale per column (dim=0)"),
        case(_with_outlier(512, 7, 60.0, seed=4), label="one outlier among normal values"),
        case(torch.zeros(64), label="all zeros"),
        case(torch.full((64,), 0.37), label="a constant tensor"),
        case(-torch.rand(256, generator=_gen(6)) - 0.01, label="negative values only"),
        case(_zero_row(), dim=1, label="a matrix with an all-zero row, dim=1"),
    ]


ABSMAX_HINTS = [
    (lambda got, exp, c: "zero" in _label(c) and not bool(torch.isfinite(got[1]).all()),
     "max |x| is 0 there: the exercise says which scale an all-zero tensor (or slice) gets"),
    (lambda got, exp, c: tuple(got[1].shape) != tuple(exp[1].shape),
     "one scale per slice: reduce with keepdim=True so that the scale broadcasts against x"),
    (lambda got, exp, c: close(got[1], 1 / exp[1], rtol=1e-5),
     "the scale is what x is multiplied by before rounding: codes per unit of x"),
    (lambda got, exp, c: close(got[1], 127 / _reduce(c, torch.amax), rtol=1e-5) or close(
        got[1], 127 / _reduce(c, torch.amin), rtol=1e-5), "the scale comes from the largest magnitude, max |x|"),
    (lambda got, exp, c: close(got[1], exp[1], rtol=1e-5) and close(
        got[0], torch.trunc(c.args[0] * exp[1]).to(torch.int8)),
     "the scale is right: round to the nearest integer (torch.round), not towards zero"),
]


def check_absmax(absmax_quantize, *, time_limit_s: float = 10.0) -> Result:
    """Check ``absmax_quantize(x, dim=None) -> (codes int8, scale)`` against :func:`utils.quant.absmax_quantize`."""
    return check_function(absmax_quantize, quant.absmax_quantize, absmax_cases(), name="absmax_quantize",
                          rtol=1e-5, time_limit_s=time_limit_s, hints=ABSMAX_HINTS)


# ---- exercise 2: zero-point ----------------------------------------------------------------------------------


def zeropoint_cases() -> list:
    return [
        case(_randn(1000, seed=11), label="1,000 random normal values"),
        case(torch.rand(500, generator=_gen(12)), label="positive values only (what zero-point is for)"),
        case(-torch.rand(256, generator=_gen(13)) - 1, label="negative values only"),
        case(_with_outlier(512, 100, -40.0, seed=14), label="one negative outlier"),
        case(_randn(4, 8, seed=15), label="a 4 x 8 matrix (one scale for all of it)"),
        case(torch.linspace(-1, 1, 9), label="a symmetric range, -1 to 1 in steps of 0.25"),
        case(torch.zeros(64), label="all zeros"),
        case(torch.full((64,), -2.5), label="a constant tensor"),
    ]


ZEROPOINT_HINTS = [
    (lambda got, exp, c: ("zero" in _label(c) or "constant" in _label(c)) and not bool(torch.isfinite(got[1]).all()),
     "max x = min x there: the exercise says which scale a constant tensor gets"),
    (lambda got, exp, c: close(got[1], 127 / c.args[0].abs().amax(), rtol=1e-5),
     "that is the absmax scale: zero-point maps the whole range [min x, max x] onto all 256 codes"),
    (lambda got, exp, c: close(got[1], 1 / exp[1], rtol=1e-5),
     "the scale is what x is multiplied by before rounding: codes per unit of x"),
    (lambda got, exp, c: close(got[1], exp[1], rtol=1e-5) and not close(got[2], exp[2], atol=1e-3),
     "the scale is right; the zero point is the code that 0.0 maps to, chosen so that min x lands on -128"),
    (lambda got, exp, c: close(got[1], exp[1], rtol=1e-5) and close(got[2], exp[2], atol=1e-3),
     "scale and zero point are right: round to the nearest code and keep codes in [-128, 127] before int8"),
]


def check_zeropoint(zeropoint_quantize, *, time_limit_s: float = 10.0) -> Result:
    """Check ``zeropoint_quantize(x) -> (codes int8, scale, zero_point)`` (one scale for the whole tensor)."""
    return check_function(zeropoint_quantize, quant.zeropoint_quantize, zeropoint_cases(),
                          name="zeropoint_quantize", rtol=1e-5, time_limit_s=time_limit_s, hints=ZEROPOINT_HINTS)


# ---- exercise 3: block-wise NF4 ------------------------------------------------------------------------------


def _block_of_one_value() -> torch.Tensor:
    return torch.cat([torch.full((64,), 0.5), _randn(64, seed=23)])


def nf4_cases() -> list:
    return [
        case(_randn(256, seed=21), blocksize=64, label="256 random normal values, blocks of 64"),
        case(_randn(3, 50, seed=22), blocksize=64, label="a 3 x 50 tensor: 150 values, the last block padded"),
        case(_block_of_one_value(), blocksize=64, label="a block of one value, then random values"),
        case(_with_outlier(256, 70, 25.0, seed=24), blocksize=64, label="one outlier in the second block"),
        case(torch.zeros(128), blocksize=64, label="all zeros"),
        case(-torch.rand(100, generator=_gen(25)) - 0.1, blocksize=32, label="negative values only, blocks of 32"),
        case(_randn(8, 16, seed=26), blocksize=128, label="128 values in one block of 128"),
    ]


NF4_HINTS = [
    (lambda got, exp, c: got[0].dtype != torch.uint8, "codes are level indices 0..15: store them as torch.uint8"),
    (lambda got, exp, c: "zero" in _label(c) and not bool(torch.isfinite(got[1]).all()),
     "a block of zeros has absmax 0: the codes of such a block are those of 0.0 (divide by 1 instead)"),
    (lambda got, exp, c: got[0].numel() != exp[0].numel(),
     "one code per value of x, in x's flattened order: drop the padding's codes"),
    (lambda got, exp, c: got[1].numel() != exp[1].numel(),
     "one absmax per block of blocksize values, the last block padded with zeros to full size"),
    (lambda got, exp, c: close(got[1], exp[1]),
     "the block scales are right: each value / its block's absmax goes to the nearest of the 16 NF4 levels, "
     "and its code is that level's index in NF4_LEVELS"),
]


def check_nf4(nf4_quantize, *, time_limit_s: float = 10.0) -> Result:
    """Check ``nf4_quantize(x, blocksize) -> (codes uint8, absmax)`` against :func:`utils.quant.nf4_quantize`."""
    return check_function(nf4_quantize, quant.nf4_quantize, nf4_cases(), name="nf4_quantize", rtol=1e-6,
                          time_limit_s=time_limit_s, hints=NF4_HINTS)


def bitsandbytes_agreement(absmax_quantize, nf4_quantize, seed: int = 0) -> dict | None:
    """How often the learner's quantizers agree with bitsandbytes' kernels on a random 64 x 256 matrix:
    int8 codes vs ``int8_vectorwise_quant`` (row-wise absmax), NF4 values vs ``quantize_4bit``. None without
    bitsandbytes."""
    if not has_package("bitsandbytes"):
        return None
    F = import_bitsandbytes().functional
    x = _randn(64, 256, seed=seed)
    q_bnb, row_absmax, _ = F.int8_vectorwise_quant(x)
    q, scale = absmax_quantize(x, dim=1)
    packed, state = F.quantize_4bit(x, blocksize=NF4_BLOCKSIZE, quant_type="nf4")
    codes, absmax = nf4_quantize(x, blocksize=NF4_BLOCKSIZE)
    ours = quant.nf4_dequantize(codes, absmax, x.shape, NF4_BLOCKSIZE)
    return {
        "int8 codes equal": float((q == q_bnb).float().mean()),
        "int8 codes within 1": float(((q.int() - q_bnb.int()).abs() <= 1).float().mean()),
        "int8 row scales equal (rtol 1e-6)": float(torch.isclose(127 / scale.reshape(-1), row_absmax,
                                                                 rtol=1e-6).float().mean()),
        "nf4 block absmax equal": float((absmax == state.absmax).float().mean()),
        "nf4 values equal": float((ours == F.dequantize_4bit(packed, state)).float().mean()),
    }


# ---- exercise 4: a model's linear layers ---------------------------------------------------------------------


def linear_layers(model) -> dict:
    """The ``nn.Linear`` modules ``quantize_linears`` quantizes: all but the output head (``lm_head``), which
    shares its weight with the token embedding in tied models."""
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] != "lm_head"}


def _reference_quantize_linears(model, method: str) -> int:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not valid; accepted: {METHODS}")
    stored = 0
    with torch.no_grad():
        for layer in linear_layers(model).values():
            w = layer.weight
            if method == "int8":
                q, scale = quant.absmax_quantize(w, dim=1)
                w.copy_(quant.absmax_dequantize(q, scale))
                stored += q.numel() * 1 + scale.numel() * 4
            else:
                codes, absmax = quant.nf4_quantize(w, NF4_BLOCKSIZE)
                w.copy_(quant.nf4_dequantize(codes, absmax, w.shape, NF4_BLOCKSIZE))
                stored += (codes.numel() + 1) // 2 + absmax.numel() * 4
    return stored


def _after(fn):
    """Run ``fn(model, method)`` on the model and return (its result, the model's parameters afterwards)."""
    if not callable(fn):
        return fn  # the check says what it is

    def run(model, method):
        out = fn(model, method)
        return out, {n: p.detach().clone() for n, p in model.named_parameters()}
    run.__wrapped__ = fn  # the learner's own function, for telling its stub apart (utils.lab_call.is_stub)
    return run


def quantize_cases() -> list:
    return [case(llama_from_shape(CHECK_SHAPE, seed=s), m, label=f"a 2-layer Llama, method={m!r}")
            for s, m in ((0, "int8"), (1, "nf4"))]


QUANTIZE_HINTS = [
    (lambda got, exp, c: not close(got[1]["model.embed_tokens.weight"], exp[1]["model.embed_tokens.weight"]),
     "the token embedding changed: leave the output head (lm_head, tied to it) as it is"),
    (lambda got, exp, c: close(got[1], exp[1], rtol=1e-5, atol=1e-7),
     "the weights are right: count the bytes stored -- codes (1 byte each for int8, 2 NF4 codes per byte) plus "
     "4 bytes per fp32 scale"),
    (lambda got, exp, c: c.args[1] == "int8", "int8 here means one absmax scale per output row (dim=1)"),
]


def check_quantize_linears(quantize_linears, *, time_limit_s: float = 30.0) -> Result:
    """Check ``quantize_linears(model, method) -> stored bytes``: every linear layer's weight replaced by its
    de-quantized value, in place, and the bytes the quantized form would occupy."""
    def reference(model, method):
        return _after(_reference_quantize_linears)(copy.deepcopy(model), method)

    return check_function(_after(quantize_linears), reference, quantize_cases(), name="quantize_linears",
                          rtol=1e-5, atol=1e-7, time_limit_s=time_limit_s, hints=QUANTIZE_HINTS)


# ---- exercise 5: perplexity ------------------------------------------------------------------------------------


@torch.no_grad()
def _reference_perplexity(model, ids: torch.Tensor) -> float:
    return float(torch.exp(model(input_ids=ids, labels=ids).loss))


def perplexity_cases() -> list:
    model = llama_from_shape(CHECK_SHAPE, seed=3).eval()
    return [case(model, torch.randint(0, CHECK_SHAPE.vocab_size, (1, 40), generator=_gen(31)), label="one sequence"),
            case(model, torch.randint(0, CHECK_SHAPE.vocab_size, (2, 17), generator=_gen(32)), label="two sequences")]


PERPLEXITY_HINTS = [
    (lambda got, exp, c: close(got, torch.log(torch.tensor(exp)).item(), rtol=1e-4),
     "that is the loss (mean negative log-likelihood per token): perplexity is its exponential"),
]


def check_perplexity(perplexity, *, time_limit_s: float = 30.0) -> Result:
    """Check ``perplexity(model, ids) -> float``: the exponential of the mean next-token loss over ``ids``."""
    return check_function(perplexity, _reference_perplexity, perplexity_cases(), name="perplexity", rtol=1e-4,
                          time_limit_s=time_limit_s, hints=PERPLEXITY_HINTS)
