"""Byte units, stated once: decimal for model sizes (as the lecture and the papers count), binary for what
a GPU and its driver report.

``GB`` is 10^9 bytes -- "1B parameters in fp32 = 4 GB". ``GiB`` is 2^30 bytes -- what ``nvidia-smi``
(in MiB), torch's allocator and its out-of-memory messages report. A card sold as "80GB" reports 81,920 MiB
= 80 GiB, about 85.9 x 10^9 bytes: NVIDIA's "GB" in a product name is binary.
"""

from __future__ import annotations

GB = 10**9  #: bytes in a gigabyte (decimal: the lecture, the papers, model sizes)
GiB = 2**30  #: bytes in a gibibyte (binary: nvidia-smi, torch.cuda, a card's name)
MiB = 2**20  #: bytes in a mebibyte (nvidia-smi's unit)
