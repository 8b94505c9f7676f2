"""Running a loaded model the way the course does: greedy generation (with the chat template of an instruct
model), sentence embeddings as sentence-transformers computes them, and the log-probability of given
continuations (scoring labels, as few-shot evaluations do). Models come from
:func:`utils.pretrained.load_pretrained` (which re-exports the first two) or any ``transformers`` model.
"""

from __future__ import annotations

from utils.validate import check_int


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, system: str | None = None) -> str:
    """Greedy (deterministic) continuation of ``prompt``; only the new text is returned.

    With a chat tokenizer (an instruct model) the prompt becomes a user message in the chat template,
    after an optional ``system`` message; otherwise it is continued as plain text.
    """
    import torch

    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
    if not isinstance(prompt, str):
        raise ValueError(f"prompt={prompt!r} is not valid; accepted: a string")
    if system is not None and not isinstance(system, str):
        raise ValueError(f"system={system!r} is not valid; accepted: a string or None")
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
    else:
        inputs = tokenizer(prompt, return_tensors="pt")
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    n_prompt = inputs["input_ids"].shape[1]
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context is not None and n_prompt + max_new_tokens > context:
        raise ValueError(
            f"prompt is {n_prompt} tokens (chat template included); with max_new_tokens={max_new_tokens} that "
            f"is {n_prompt + max_new_tokens} tokens, more than the model's context of {context}; accepted: a "
            "shorter prompt or fewer new tokens"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id)
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


def embed(model, tokenizer, sentences, batch_size: int = 32, max_length: int = 256):
    """Sentence embeddings as sentence-transformers computes them for MiniLM: mean of the token vectors
    (padding excluded), then L2-normalised, so a dot product is the cosine similarity.

    ``sentences``: a string or a list of strings. Returns a float tensor of shape (n, hidden size).
    ``max_length`` 256 is all-MiniLM-L6-v2's ``max_seq_length``.
    """
    import torch
    import torch.nn.functional as F

    batch_size = check_int("batch_size", batch_size, minimum=1)
    max_length = check_int("max_length", max_length, minimum=2)
    if isinstance(sentences, str):
        sentences = [sentences]
    if not sentences or not all(isinstance(s, str) for s in sentences):
        raise ValueError(f"sentences must be a string or a non-empty list of strings, got {sentences!r}")
    chunks = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(
            sentences[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(model.device)
        with torch.inference_mode():
            tokens = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        chunks.append(F.normalize(mean.float(), p=2, dim=1))
    return torch.cat(chunks)


def continuation_logprobs(model, tokenizer, prompt: str, continuations) -> list[float]:
    """``log p(continuation | prompt)`` of each continuation: the sum of its tokens' log-probabilities under
    teacher forcing (one batched forward pass, right-padded, so the prompt is read identically each time).

    Plain text, no chat template and no special tokens: the same string reaches every causal LM, which is
    what comparing models with different tokenizers on the same prompts needs. A label that follows
    ``"Sentiment:"`` is scored as ``" positive"``, with its leading space, as it would appear in running text.
    """
    import torch

    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt={prompt!r} is not valid; accepted: a non-empty string")
    if isinstance(continuations, str) or not isinstance(continuations, (list, tuple)) or not continuations or not all(
        isinstance(c, str) and c for c in continuations
    ):
        raise ValueError(f"continuations={continuations!r} is not valid; accepted: a non-empty list of non-empty strings")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    cont_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    longest = len(prompt_ids) + max(len(c) for c in cont_ids)
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context is not None and longest > context:
        raise ValueError(
            f"prompt is {len(prompt_ids)} tokens; with its longest continuation that is {longest} tokens, more "
            f"than the model's context of {context}; accepted: a shorter prompt (fewer in-context examples)"
        )
    rows = [prompt_ids + c + [0] * (longest - len(prompt_ids) - len(c)) for c in cont_ids]
    mask = [[1] * (len(prompt_ids) + len(c)) + [0] * (longest - len(prompt_ids) - len(c)) for c in cont_ids]
    device = getattr(model, "device", "cpu")
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor(rows, device=device),
                       attention_mask=torch.tensor(mask, device=device)).logits.float()
    logp = logits.log_softmax(-1)
    start = len(prompt_ids) - 1  # the logits at position t predict token t + 1
    return [sum(logp[i, start + j, tok].item() for j, tok in enumerate(c)) for i, c in enumerate(cont_ids)]
