"""What a rank measures about itself during a distributed step: the bytes of the tensors it really holds
(a DTensor counts its local shard only) and the collectives it issues (count, payload, bytes sent).
Used by :mod:`utils.strategies`; torch.distributed is patched only inside :meth:`CollectiveCounter.installed`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

#: Collectives counted: the name they are reported under (torch 2.13 calls them *_single, older releases
#: *_into_tensor / *_tensor), and the position and keyword of the argument holding the full payload.
_COLLECTIVES = {
    "all_reduce": ("all_reduce", 0, "tensor"), "broadcast": ("broadcast", 0, "tensor"),
    "all_gather_single": ("all_gather", 0, "output_tensor"),
    "all_gather_into_tensor": ("all_gather", 0, "output_tensor"),
    "reduce_scatter_single": ("reduce_scatter", 1, "input"),
    "reduce_scatter_tensor": ("reduce_scatter", 1, "input"),
}


def local_part(t: torch.Tensor) -> torch.Tensor:
    """The piece of ``t`` this rank stores: a DTensor's local shard, any other tensor itself."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def local_bytes(tensors) -> int:
    """Bytes of this rank's local pieces of ``tensors`` (DTensor -> its local shard), each counted once."""
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            t = local_part(t)
            key = (t.device, t.data_ptr(), t.numel(), t.dtype) if t.numel() else id(t)
            seen[key] = t.numel() * t.element_size()
    return sum(seen.values())


def optimizer_tensors(optim):
    """The optimizer's state tensors (m, v), 0-dim step counters left out; ZeroRedundancyOptimizer's own."""
    inner = getattr(optim, "optim", optim)  # ZeroRedundancyOptimizer keeps the rank's optimizer in .optim
    return [v for s in inner.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim() > 0]


class CollectiveCounter:
    """Counts the bytes of every collective issued through ``torch.distributed`` while installed.

    Payload = the full tensor a collective works on (an all-gather's output, a reduce-scatter's input).
    ``sent`` = bytes each rank sends with ring algorithms: (g-1)/g of the payload for all-gather,
    reduce-scatter and broadcast, twice that for all-reduce (= reduce-scatter + all-gather), g = group size.
    """

    def __init__(self):
        self.calls: dict[str, list] = {}
        self._depth = threading.local()

    def reset(self) -> None:
        self.calls = {}

    def _counting(self, fn, where):
        name, position, keyword = where

        def counted(*args, **kwargs):
            depth = getattr(self._depth, "n", 0)
            if depth == 0:  # count the outermost call only (one collective may call another)
                tensor = args[position] if len(args) > position else kwargs[keyword]
                g = torch.distributed.get_world_size(kwargs.get("group"))
                nbytes = tensor.numel() * tensor.element_size()
                row = self.calls.setdefault(name, [0, 0, 0.0])
                row[0] += 1
                row[1] += nbytes
                row[2] += nbytes * (g - 1) / g * (2 if name == "all_reduce" else 1)
            self._depth.n = depth + 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth.n = depth

        return counted

    @contextmanager
    def installed(self):
        import torch.distributed as dist

        originals = {name: getattr(dist, name) for name in _COLLECTIVES if hasattr(dist, name)}
        try:
            for name, fn in originals.items():
                setattr(dist, name, self._counting(fn, _COLLECTIVES[name]))
            yield self
        finally:
            for name, fn in originals.items():
                setattr(dist, name, fn)
