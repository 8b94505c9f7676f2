"""utils.inference.continuation_logprobs: teacher-forced scores of continuations, the same by hand, any tokenizer."""

import pytest
import torch

from utils.inference import continuation_logprobs
from utils.models import build_model
from utils.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    tokenizer = get_tokenizer("prose")  # trained once per machine, then read from the course cache
    return build_model("decoder", "tiny", vocab_size=len(tokenizer)).eval(), tokenizer


def _by_hand(model, tokenizer, prompt, continuation):
    """One unpadded forward pass of prompt + continuation; sum the continuation tokens' log-probabilities."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([p + c])).logits[0].log_softmax(-1)
    return sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(c))


def test_scores_equal_one_unpadded_pass_each_even_with_different_lengths(decoder):
    model, tok = decoder
    prompt, conts = "Review: the parser works.\nSentiment:", [" positive", " negative", " not quite what I wanted"]
    lengths = {len(tok(c, add_special_tokens=False)["input_ids"]) for c in conts}
    assert len(lengths) > 1  # padding is exercised
    scores = continuation_logprobs(model, tok, prompt, conts)
    for c, s in zip(conts, scores):
        assert s == pytest.approx(_by_hand(model, tok, prompt, c), abs=1e-4)
    assert all(s < 0 for s in scores)


def test_chain_rule_splits_a_continuation(decoder):
    # log p(a b | x) = log p(a | x) + log p(b | x a): the offsets of prompt and continuation are right
    model, tok = decoder
    whole, = continuation_logprobs(model, tok, "The module", [" returns a list"])
    first, = continuation_logprobs(model, tok, "The module", [" returns"])
    rest, = continuation_logprobs(model, tok, "The module returns", [" a list"])
    assert whole == pytest.approx(first + rest, abs=1e-4)


def test_bad_arguments_and_a_prompt_longer_than_the_context(decoder):
    model, tok = decoder
    for prompt in ("", None, 3):
        with pytest.raises(ValueError, match="prompt="):
            continuation_logprobs(model, tok, prompt, [" a"])
    for conts in ([], " positive", [" a", ""], [" a", 3]):
        with pytest.raises(ValueError, match="continuations="):
            continuation_logprobs(model, tok, "x", conts)
    with pytest.raises(ValueError, match="context of 128"):
        continuation_logprobs(model, tok, "word " * 200, [" a"])
