"""Where training batches come from: batch ``i`` depends only on (seed, ``i``), so the position is the whole
state -- random access for held-out sets, and exact resume from a checkpoint.

* :class:`IndexedBatches` -- what every batch source shares (iteration, ``state_dict`` / ``load_state_dict``).
* :class:`TokenBatches` -- random windows of a 1-D tensor of token ids with an objective applied
  (:func:`utils.objectives.make_batch`); :func:`batch_seed` is its per-batch seed.
* :func:`split_tokens` -- a held-out tail of a token tensor.

Importing this module does not import torch (the torch-using code imports it when called), so modules that
import torch lazily (:mod:`utils.domain`) can build on it.
"""

from __future__ import annotations

from utils.validate import check_choice, check_fraction, check_int


class IndexedBatches:
    """An iterator over ``batch(0), batch(1), ...``; subclasses set ``seed`` and ``position`` and define
    ``batch(index)``. A second ``train()`` on the same object continues where the first stopped."""

    seed: int
    position: int

    def batch(self, index: int):
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self):
        out = self.batch(self.position)
        self.position += 1
        return out

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(
                f"checkpoint data seed={state['seed']} differs from this {type(self).__name__}'s seed={self.seed}"
            )
        self.position = int(state["position"])


def batch_seed(seed: int, index: int) -> int:
    """The generator seed of batch ``index`` of a stream seeded ``seed`` (what :class:`TokenBatches` uses).

    torch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so ``seed * 2**32 + index`` would
    give every seed the same stream. Instead each seed starts the index at its own point of a Weyl sequence
    (``seed`` times 2**32 / golden ratio, mod 2**32): streams of different seeds meet only ~10^9 batches
    apart, and seed 0 keeps the plain ``index``.
    """
    return (index + seed * 0x9E3779B9) % 2**32


class TokenBatches(IndexedBatches):
    """Infinite, deterministic batches of random windows of ``tokens``, with an objective applied.

    Batch number ``i`` depends only on (``seed``, ``i``): a fresh ``torch.Generator`` seeded with both picks
    ``batch_size`` window starts and then the objective's random choices. So the position (how many batches
    were drawn) is the whole iterator state, and :meth:`batch` gives random access (held-out sets).

    ``objective``: "clm", "mlm" or "span"; ``ids``: the special ids that objective needs
    (see :func:`utils.objectives.make_batch`), e.g. ``mask_id=..., vocab_size=...`` for "mlm".
    It is an iterator: a second ``train()`` on the same object continues where the first stopped
    (``position = 0`` starts over).
    """

    def __init__(self, tokens, objective: str = "clm", batch_size: int = 16, seq_len: int = 128, *, seed: int = 0,
                 **ids):
        from utils.objectives import OBJECTIVES, check_token_ids

        tokens = check_token_ids("tokens", tokens, dim=1)
        check_choice("objective", objective, OBJECTIVES)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        seq_len = check_int("seq_len", seq_len, minimum=2)
        seed = check_int("seed", seed, minimum=0)
        if batch_size * seq_len > len(tokens):
            raise ValueError(
                f"batch_size * seq_len = {batch_size} * {seq_len} = {batch_size * seq_len} tokens is larger "
                f"than the data ({len(tokens)} tokens); use a smaller batch_size or seq_len, or more text"
            )
        self.tokens = tokens.long()
        self.objective, self.ids = objective, ids
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.position = 0  # batches drawn so far = index of the next one
        self.batch(0)  # fail now, not mid-training, on missing or wrong special ids

    def batch(self, index: int) -> dict:
        """Batch number ``index`` (does not move the position)."""
        import torch

        from utils.objectives import make_batch

        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        starts = torch.randint(0, len(self.tokens) - self.seq_len + 1, (self.batch_size,), generator=g)  # (B,)
        windows = self.tokens[starts[:, None] + torch.arange(self.seq_len)]  # (B, T)
        return make_batch(self.objective, windows, generator=g, **self.ids)


def split_tokens(tokens, eval_fraction: float = 0.1):
    """(train, held-out): the last ``eval_fraction`` of a 1-D token tensor is held out."""
    import torch

    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1:
        raise ValueError(f"tokens must be a 1-D tensor of token ids; got {getattr(tokens, 'shape', type(tokens).__name__)}")
    eval_fraction = check_fraction("eval_fraction", eval_fraction, low_open=True, high_open=True)
    cut = int(len(tokens) * (1 - eval_fraction))
    return tokens[:cut], tokens[cut:]
