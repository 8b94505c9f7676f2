"""What every batch source of the course shares: batch ``i`` depends only on (seed, ``i``), so the position
is the whole state -- random access for held-out sets, and exact resume from a checkpoint.

Torch-free, so modules that import torch lazily (:mod:`utils.domain`) can build on it.
"""

from __future__ import annotations


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
