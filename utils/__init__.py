"""LLM Pre-training Course: the importable package behind the notebooks (one module per topic).

Modules import torch lazily where they can, so ``utils.memory`` works without torch installed.
"""

__version__ = "0.1.0"
