"""Running a loaded model the way the course does: greedy generation (with the chat template of an instruct
model) and sentence embeddings as sentence-transformers computes them. Models come from
:func:`utils.pretrained.load_pretrained` (which re-exports both functions) or any ``transformers`` model.
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
