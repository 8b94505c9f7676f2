"""Model shapes for the memory arithmetic: a Llama-style decoder (read from a ``transformers`` config) and
the GPT-3 family of Brown et al. 2020.

The field names follow the sources they are read from (``transformers``' Llama config, the GPT-3 paper):
``hidden_size`` is the course's ``d_model`` and ``intermediate_size`` its ``d_ff``; both shapes also
answer to the course's names. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from utils.validate import check_int, fail


@dataclass(frozen=True)
class DecoderShape:
    """The shape of a Llama-style decoder (RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP).

    Fields are named as in ``transformers``' Llama config, which :meth:`from_config` reads: ``hidden_size``
    is the course's ``d_model`` and ``intermediate_size`` its ``d_ff`` (both also readable under those
    names)."""

    hidden_size: int  # h, the course's d_model
    intermediate_size: int  # I, the SwiGLU MLP's inner width
    n_layers: int  # L
    n_heads: int  # a, query heads
    n_kv_heads: int  # key/value heads (grouped-query attention when < n_heads)
    vocab_size: int  # V
    tie_embeddings: bool = True  # the output projection shares the token embedding matrix

    def __post_init__(self):
        for f in fields(self):
            if f.name != "tie_embeddings":
                check_int(f.name, getattr(self, f.name), minimum=1)
        if self.hidden_size % self.n_heads:
            fail("n_heads", self.n_heads, f"a divisor of hidden_size={self.hidden_size}")
        if self.n_heads % self.n_kv_heads:
            fail("n_kv_heads", self.n_kv_heads, f"a divisor of n_heads={self.n_heads}")

    @property
    def d_model(self) -> int:
        """The course's name for :attr:`hidden_size`."""
        return self.hidden_size

    @property
    def d_ff(self) -> int:
        """The course's name for :attr:`intermediate_size`."""
        return self.intermediate_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    @property
    def kv_size(self) -> int:
        """Width of the key (and of the value) projection: n_kv_heads x head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def matmul_params(self) -> int:
        """Parameters of the matrix multiplications: attention and MLP projections, and the output head."""
        h, kv, i = self.hidden_size, self.kv_size, self.intermediate_size
        return self.n_layers * (2 * h * h + 2 * h * kv + 3 * h * i) + self.vocab_size * h

    @property
    def n_params(self) -> int:
        """All parameters: matrices, norm weights, token embeddings (once if tied)."""
        norms = (2 * self.n_layers + 1) * self.hidden_size
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)
        return self.matmul_params - self.vocab_size * self.hidden_size + norms + embeddings

    @classmethod
    def from_config(cls, config) -> DecoderShape:
        """Read a ``transformers`` Llama-style config (``LlamaConfig``, a loaded model's ``.config``)."""
        heads = config.num_attention_heads
        return cls(
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            n_layers=config.num_hidden_layers,
            n_heads=heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            vocab_size=config.vocab_size,
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
        )


#: SmolLM2-135M (HuggingFaceTB/SmolLM2-135M): 134,515,008 parameters.
SMOLLM2_135M = DecoderShape(
    hidden_size=576, intermediate_size=1536, n_layers=30, n_heads=9, n_kv_heads=3, vocab_size=49152
)


@dataclass(frozen=True)
class GptShape:
    """A GPT-3 model's shape (Brown et al. 2020, Table 2.1; parameter counts from Table D.1)."""

    n_params: float
    n_layers: int
    hidden_size: int  # the paper's d_model (Table 2.1)
    n_heads: int

    @property
    def d_model(self) -> int:
        """The course's name for :attr:`hidden_size`."""
        return self.hidden_size


#: The GPT-3 family (vocabulary 50,257, context 2,048).
GPT3_SHAPES: dict[str, GptShape] = {
    "GPT-3 Small (125M)": GptShape(125e6, 12, 768, 12),
    "GPT-3 Medium (356M)": GptShape(356e6, 24, 1024, 16),
    "GPT-3 Large (760M)": GptShape(760e6, 24, 1536, 16),
    "GPT-3 XL (1.3B)": GptShape(1_320e6, 24, 2048, 24),
    "GPT-3 2.7B": GptShape(2_650e6, 32, 2560, 32),
    "GPT-3 6.7B": GptShape(6_660e6, 32, 4096, 32),
    "GPT-3 13B": GptShape(12_850e6, 40, 5140, 40),
    "GPT-3 175B": GptShape(174_600e6, 96, 12288, 96),
}
GPT3_VOCAB_SIZE = 50257
