"""Lab 2 (utils/lab_quant.py): the solutions pass, deliberately wrong and invalid answers are caught with the
intended message and hint, and no message gives the expected value away."""

import sys
import time
from pathlib import Path

import pytest
import torch

from utils import lab_quant as lab
from utils.quant import NF4_LEVELS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_student_labs as msl  # noqa: E402


@pytest.fixture(scope="module")
def sol():
    # the solution cells only (the SmolLM2 measurement is not a solution cell, so it does not run here)
    return msl.load_solutions(ROOT / "labs" / "solutions" / "02_quantize_a_model_solutions.ipynb")


def test_the_solutions_pass_every_check(sol):
    assert lab.check_absmax(sol["absmax_quantize"]).status == "correct"
    assert lab.check_zeropoint(sol["zeropoint_quantize"]).status == "correct"
    assert lab.check_nf4(sol["nf4_quantize"]).status == "correct"
    assert lab.check_quantize_linears(sol["quantize_linears"]).status == "correct"
    assert lab.check_perplexity(sol["perplexity"]).status == "correct"


def test_the_solutions_agree_with_bitsandbytes(sol):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
    agreement = lab.bitsandbytes_agreement(sol["absmax_quantize"], sol["nf4_quantize"])
    assert min(agreement.values()) > 0.99, agreement


def _stub(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("check", [lab.check_absmax, lab.check_zeropoint, lab.check_nf4, lab.check_perplexity])
def test_stubs_are_not_done_yet(check):
    assert check(_stub).status == "not done yet"


# ---- exercise 1: absmax


def _absmax_max_not_abs(x, dim=None):
    amax = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)
    return torch.round(x * 127 / amax).to(torch.int8), 127 / amax


def _absmax_no_keepdim(sol):
    def fn(x, dim=None):
        q, scale = sol["absmax_quantize"](x, dim)
        return q, scale if dim is None else scale.squeeze(dim)
    return fn


def _absmax_trunc(sol):
    def fn(x, dim=None):
        _, scale = sol["absmax_quantize"](x, dim)
        return torch.trunc(x * scale).to(torch.int8), scale
    return fn


def _absmax_inverse_scale(sol):
    def fn(x, dim=None):
        q, scale = sol["absmax_quantize"](x, dim)
        return q, 1 / scale
    return fn


def test_absmax_zero_scale_is_invalid_with_a_hint(sol):
    def fn(x, dim=None):
        amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
        return torch.round(torch.nan_to_num(x * 127 / amax)).to(torch.int8), 127 / amax

    r = lab.check_absmax(fn)
    assert r.status == "invalid" and "all zeros" in r.message and "NaN or infinite" in r.message
    assert "which scale an all-zero tensor" in r.hint


@pytest.mark.parametrize("fn, words", [
    (lambda x, dim=None: (torch.round(x * 10), torch.tensor(10.0)), "holds float32 values; the exercise asks for int8"),
    (lambda x, dim=None: torch.round(x).to(torch.int8), "not a tuple of 2 values"),
    (lambda x, dim=None: x.numpy(), "not a tuple"),
    (lambda x, dim=None: (x.to(torch.int8), x.abs().max().item() / 0), "raised ZeroDivisionError"),
])
def test_absmax_invalid_answers(fn, words):
    r = lab.check_absmax(fn)
    assert r.status == "invalid" and words in r.message, r


def test_absmax_that_loops_over_values_is_stopped():
    def slow(x, dim=None):
        while True:
            pass

    t0 = time.perf_counter()
    r = lab.check_absmax(slow, time_limit_s=0.3)
    assert r.status == "invalid" and "took longer than 0.3 s" in r.message and "loop" in r.hint
    assert time.perf_counter() - t0 < 20


# ---- exercise 2: zero-point


def _zp_no_clamp(sol):
    def fn(x):
        _, scale, zp = sol["zeropoint_quantize"](x)
        return (torch.round(x * scale) + zp).to(torch.int8), scale, zp
    return fn


def _zp_off_by_one(sol):
    def fn(x):
        q, scale, zp = sol["zeropoint_quantize"](x)
        return q, scale, zp + 1
    return fn


def _zp_absmax_scale(sol):
    def fn(x):
        q, scale = sol["absmax_quantize"](x)
        return q, scale, torch.tensor(0.0)
    return fn


@pytest.mark.parametrize("make, where, hint", [
    (_zp_no_clamp, "a symmetric range", "keep codes in [-128, 127]"),
    (_zp_off_by_one, "case 1 of", "min x lands on -128"),
    (_zp_absmax_scale, "case 1 of", "that is the absmax scale"),
])
def test_zeropoint_wrong_answers_get_their_hint(sol, make, where, hint):
    r = lab.check_zeropoint(make(sol))
    assert r.status == "wrong" and where in r.message and hint in r.hint, r


def test_zeropoint_int_zero_point_is_accepted_and_constant_needs_a_scale(sol):
    def int_zp(x):
        q, scale, zp = sol["zeropoint_quantize"](x)
        return q, scale, int(zp)

    assert lab.check_zeropoint(int_zp).ok

    def no_constant_rule(x):
        lo, hi = x.amin(), x.amax()
        scale = 255 / (hi - lo)
        zp = torch.round(-lo * scale) - 128
        return torch.clamp(torch.round(x * scale) + zp, -128, 127).to(torch.int8), scale, zp

    r = lab.check_zeropoint(no_constant_rule)
    assert r.status in ("wrong", "invalid") and "all zeros" in r.message and "constant tensor gets" in r.hint


def test_zeropoint_invalid_answer():
    r = lab.check_zeropoint(lambda x: (x.to(torch.int8), 1.0))
    assert r.status == "invalid" and "holds 2 values, not 3" in r.message


# ---- exercise 3: NF4


def _nf4_padded_codes(sol):
    def fn(x, blocksize=64):
        codes, absmax = sol["nf4_quantize"](x, blocksize)
        pad = -codes.numel() % blocksize
        return torch.cat([codes, torch.full((pad,), 7, dtype=torch.uint8)]), absmax
    return fn


def _nf4_one_scale(sol):
    def fn(x, blocksize=64):
        flat = x.reshape(-1)
        amax = flat.abs().amax()
        codes = (flat[:, None] / amax - NF4_LEVELS).abs().argmin(-1).to(torch.uint8)
        return codes, amax.reshape(1)
    return fn


def _nf4_nearest_lower(sol):
    def fn(x, blocksize=64):
        codes, absmax = sol["nf4_quantize"](x, blocksize)
        return codes.clamp(min=1) - 1, absmax
    return fn


@pytest.mark.parametrize("check, make, hint", [
    (lab.check_absmax, lambda sol: _absmax_max_not_abs, "largest magnitude, max |x|"),
    (lab.check_absmax, _absmax_no_keepdim, "keepdim=True"),
    (lab.check_absmax, _absmax_trunc, "torch.round"),
    (lab.check_absmax, _absmax_inverse_scale, "codes per unit of x"),
    (lab.check_nf4, _nf4_padded_codes, "drop the padding's codes"),
    (lab.check_nf4, _nf4_one_scale, "one absmax per block"),
    (lab.check_nf4, _nf4_nearest_lower, "the block scales are right"),
])
def test_quantizer_wrong_answers_get_their_hint(sol, check, make, hint):
    r = check(make(sol))
    assert r.status == "wrong" and hint in r.hint, r


def test_nf4_invalid_answers(sol):
    r = lab.check_nf4(lambda x, blocksize=64: (sol["nf4_quantize"](x, blocksize)[0].long(),
                                               sol["nf4_quantize"](x, blocksize)[1]))
    assert r.status == "invalid" and "int64" in r.message and "torch.uint8" in r.hint

    def no_padding(x, blocksize=64):
        blocks = x.reshape(-1, blocksize)  # 150 values do not make whole blocks of 64
        return sol["nf4_quantize"](blocks, blocksize)

    r = lab.check_nf4(no_padding)
    assert r.status == "invalid" and "the last block padded" in r.message and "RuntimeError" in r.message


# ---- exercises 4 and 5: a model


def test_quantize_linears_wrong_and_invalid(sol):
    def fp32_bytes(model, method):
        sol["quantize_linears"](model, method)
        return sum(4 * m.weight.numel() for m in lab.linear_layers(model).values())

    r = lab.check_quantize_linears(fp32_bytes)
    assert r.status == "wrong" and "count the bytes stored" in r.hint

    def also_head(model, method):
        out = sol["quantize_linears"](model, method)
        with torch.no_grad():
            model.lm_head.weight.mul_(0.5)
        return out

    r = lab.check_quantize_linears(also_head)
    assert r.status == "wrong" and "lm_head" in r.hint

    r = lab.check_quantize_linears(lambda model, method: None)
    assert r.status == "invalid" and "not a number" in r.message


def test_perplexity_wrong_and_invalid():
    r = lab.check_perplexity(lambda model, ids: model(input_ids=ids, labels=ids).loss.item())
    assert r.status == "wrong" and "exponential" in r.hint
    r = lab.check_perplexity(lambda model, ids: model(ids))
    assert r.status == "invalid" and "not a number" in r.message
