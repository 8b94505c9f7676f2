"""Small transformer models of the three families, built from named size presets, and their parameter counts.

One shape (layers, width, heads, feed-forward size, context) becomes a model of any family:

* ``"decoder"``: ``GPT2LMHeadModel`` -- causal language modelling (CLM). GPT-2 rather than Llama because
  its parts (learned position embeddings, biases, LayerNorm, 4x GELU MLP) are the ones the lecture and the
  GPT-3 / Kaplan papers count, and the ``"gpt2-small"`` preset then reproduces GPT-2 small's 124M
  parameters exactly. (Notebook 03 builds a SmolLM2-shaped Llama with ``transformers.LlamaConfig``.)
* ``"encoder"``: ``BertForMaskedLM`` -- masked language modelling (MLM).
* ``"encoder-decoder"``: ``T5ForConditionalGeneration`` -- span corruption. ``n_layers`` is the depth of
  *each* stack (T5's convention), so it has about twice the layers of the other two.

Every model ties its output projection to its token embeddings (as GPT-2, BERT and T5 do); the decoder
can be untied with ``tie_embeddings=False``. :func:`estimate_parameters` predicts :func:`count_parameters` of the built model
by arithmetic alone; the tests check the two agree for every family and preset.

Special-token ids default to the layout of :mod:`utils.tokenizer` (``<pad>`` = 0, ``<|endoftext|>`` = 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from utils.validate import check_bool, check_choice, check_int, check_number, fail

#: The model families, by how they are pre-trained (CLM, MLM, span corruption).
FAMILIES = ("decoder", "encoder", "encoder-decoder")

#: Vocabulary size of the course tokenizer (:func:`utils.tokenizer.get_tokenizer` default).
DEFAULT_VOCAB_SIZE = 4096

#: Family-agnostic shapes. Parameter counts per family: see :func:`estimate_parameters` (and the README).
PRESETS: dict[str, dict[str, int]] = {
    # builds in milliseconds: unit tests and shape demos
    "tiny": dict(n_layers=2, d_model=64, n_heads=4, d_ff=256, max_seq_len=128),
    # ~1.3M parameters (decoder, vocab 4096): trains in minutes on a laptop CPU inside a notebook
    "small": dict(n_layers=4, d_model=128, n_heads=4, d_ff=512, max_seq_len=256),
    # ~12M parameters (decoder, vocab 4096): the largest that is still pleasant on CPU; comfortable on a GPU
    "medium": dict(n_layers=6, d_model=384, n_heads=6, d_ff=1536, max_seq_len=512),
    # GPT-2 small (Radford et al. 2019): 124,439,808 parameters with GPT-2's vocabulary of 50,257
    "gpt2-small": dict(n_layers=12, d_model=768, n_heads=12, d_ff=3072, max_seq_len=1024),
}

#: T5's relative-position buckets (T5Config defaults), used for the encoder-decoder family.
T5_RELATIVE_BUCKETS = 32
T5_RELATIVE_MAX_DISTANCE = 128
#: BERT's segment (token-type) vocabulary: sentence A / sentence B.
BERT_TYPE_VOCAB_SIZE = 2


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a model, independent of the library class that implements it."""

    family: str  # "decoder" (GPT-2, CLM), "encoder" (BERT, MLM) or "encoder-decoder" (T5, span corruption)
    n_layers: int  # transformer blocks (per stack for encoder-decoder)
    d_model: int  # hidden size h: width of the residual stream and of every embedding vector
    n_heads: int  # attention heads a; each has d_model // n_heads dimensions
    d_ff: int  # inner size of the feed-forward (MLP) block, usually 4 * d_model
    max_seq_len: int  # longest sequence (learned position table size; T5 uses relative positions instead)
    vocab_size: int = DEFAULT_VOCAB_SIZE  # rows of the token embedding matrix
    dropout: float = 0.0  # dropout everywhere (0: small models on little data barely overfit; deterministic)
    tie_embeddings: bool = True  # output projection shares the token embedding matrix (False: decoder only)
    pad_token_id: int = 0  # id of <pad> in utils.tokenizer
    eos_token_id: int = 1  # id of <|endoftext|> in utils.tokenizer (also BOS, as in GPT-2)

    def __post_init__(self):
        check_choice("family", self.family, FAMILIES)
        # frozen: object.__setattr__ stores numpy ints as plain ints (JSON-serialisable, same hash)
        for name in ("n_layers", "d_model", "n_heads", "d_ff", "max_seq_len", "vocab_size"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=1))
        for name in ("pad_token_id", "eos_token_id"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=0))
        object.__setattr__(self, "tie_embeddings", check_bool("tie_embeddings", self.tie_embeddings))
        object.__setattr__(
            self, "dropout", check_number("dropout", self.dropout, minimum=0, maximum=1, max_open=True)
        )
        if self.d_model % self.n_heads:
            fail("n_heads", self.n_heads, f"a divisor of d_model={self.d_model}")
        if not self.tie_embeddings and self.family != "decoder":
            # transformers 5 always ties T5's head (T5Config overrides the flag) and unties BERT's output
            # bias along with the matrix, unlike 4.x: untying is only well-defined for GPT-2 across versions
            fail("tie_embeddings", False, f"True for family={self.family!r} (untied: family='decoder' only)")

    @property
    def head_dim(self) -> int:
        """Dimensions per attention head."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


def model_config(
    family: str, preset: str = "tiny", vocab_size: int = DEFAULT_VOCAB_SIZE, **overrides
) -> ModelConfig:
    """The :class:`ModelConfig` of ``preset`` for ``family``, with any field overridden by keyword."""
    check_choice("family", family, FAMILIES)
    check_choice("preset", preset, PRESETS)
    valid = {f.name for f in fields(ModelConfig)} - {"family", "vocab_size"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        fail("overrides", unknown, f"ModelConfig fields: {sorted(valid)}")
    return ModelConfig(family=family, vocab_size=vocab_size, **{**PRESETS[preset], **overrides})


def config_for(
    config: ModelConfig | str, preset: str = "tiny", vocab_size: int = DEFAULT_VOCAB_SIZE, **overrides
):
    """The ``transformers`` config object (GPT2Config, BertConfig or T5Config) for a shape.

    Pass a :class:`ModelConfig`, or a family name plus preset / vocab_size / overrides as for
    :func:`build_model`.
    """
    import transformers

    cfg = config if isinstance(config, ModelConfig) else model_config(config, preset, vocab_size, **overrides)
    common = dict(
        vocab_size=cfg.vocab_size,
        tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=cfg.pad_token_id,
        eos_token_id=cfg.eos_token_id,
    )
    if cfg.family == "decoder":
        return transformers.GPT2Config(
            n_layer=cfg.n_layers,
            n_embd=cfg.d_model,
            n_head=cfg.n_heads,
            n_inner=cfg.d_ff,
            n_positions=cfg.max_seq_len,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            bos_token_id=cfg.eos_token_id,  # GPT-2 uses <|endoftext|> for both
            **common,
        )
    if cfg.family == "encoder":
        return transformers.BertConfig(
            num_hidden_layers=cfg.n_layers,
            hidden_size=cfg.d_model,
            num_attention_heads=cfg.n_heads,
            intermediate_size=cfg.d_ff,
            max_position_embeddings=cfg.max_seq_len,
            type_vocab_size=BERT_TYPE_VOCAB_SIZE,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
            **common,
        )
    return transformers.T5Config(
        num_layers=cfg.n_layers,
        num_decoder_layers=cfg.n_layers,
        d_model=cfg.d_model,
        num_heads=cfg.n_heads,
        d_kv=cfg.head_dim,
        d_ff=cfg.d_ff,
        n_positions=cfg.max_seq_len,  # informational only: T5 uses relative position buckets
        relative_attention_num_buckets=T5_RELATIVE_BUCKETS,
        relative_attention_max_distance=T5_RELATIVE_MAX_DISTANCE,
        feed_forward_proj="relu",  # original T5 (v1.0); v1.1's gated-GELU would add a third matrix
        dropout_rate=cfg.dropout,
        decoder_start_token_id=cfg.pad_token_id,  # T5 starts decoding from <pad>
        **common,
    )


def build_model(
    family: str | ModelConfig, preset: str = "tiny", vocab_size: int = DEFAULT_VOCAB_SIZE, **overrides
):
    """A freshly initialised ``transformers`` model of ``family`` with the shape ``preset``.

    ``family``: ``"decoder"`` -> GPT2LMHeadModel, ``"encoder"`` -> BertForMaskedLM,
    ``"encoder-decoder"`` -> T5ForConditionalGeneration (or pass a :class:`ModelConfig`).
    ``overrides`` replace preset fields, e.g. ``build_model("decoder", "small", n_layers=2)``.
    Weights come from torch's RNG: call :func:`utils.env.seed_everything` first for identical models.
    Build inside ``with torch.device("meta"):`` to get the structure without allocating memory.
    """
    import transformers

    cfg = family if isinstance(family, ModelConfig) else model_config(family, preset, vocab_size, **overrides)
    model_class = {
        "decoder": transformers.GPT2LMHeadModel,
        "encoder": transformers.BertForMaskedLM,
        "encoder-decoder": transformers.T5ForConditionalGeneration,
    }[cfg.family]
    hf_config = config_for(cfg)
    # PyTorch's fused scaled_dot_product_attention where the class supports it (all three do today)
    attn = "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"
    hf_config._attn_implementation = attn
    model = model_class(hf_config)
    if cfg.family == "decoder":
        # transformers picks the loss from the class name, and "GPT2LMHeadModel" names none: it would
        # warn on every forward with labels before falling back to this same causal-LM loss
        model.loss_type = "ForCausalLM"
    return model


@dataclass(frozen=True)
class ParameterCount:
    """Parameters of a model, split as Kaplan et al. (2020) do for scaling laws."""

    total: int  # every distinct parameter (a tied matrix counts once)
    embedding: int  # token, position, segment (BERT), relative-position (T5) tables + untied output head
    non_embedding: int  # total - embedding: the "N" of Kaplan's scaling laws

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(model) -> ParameterCount:
    """Count ``model``'s parameters: total, embedding tables, and the rest.

    Embedding = the weights of every ``nn.Embedding`` (token, position, segment, T5's relative-position
    bias) plus the output projection's weight when it is not tied to the token embeddings. Shared
    tensors are counted once, as ``model.parameters()`` does.
    """
    import torch

    unique = {id(p): p for p in model.parameters()}
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None:
        embedding_ids.add(id(output.weight))
    total = sum(p.numel() for p in unique.values())
    embedding = sum(p.numel() for i, p in unique.items() if i in embedding_ids)
    return ParameterCount(total=total, embedding=embedding, non_embedding=total - embedding)


def estimate_parameters(
    config: ModelConfig | str, preset: str = "tiny", vocab_size: int = DEFAULT_VOCAB_SIZE, **overrides
) -> ParameterCount:
    """Predict :func:`count_parameters` of :func:`build_model`'s model from the shape alone (no torch).

    With V = vocab, P = positions, h = d_model, f = d_ff, L = n_layers:
    decoder (GPT-2): per layer 4h^2 + 4h (attention, with biases) + 2hf + f + h (MLP) + 4h (two LayerNorms);
    embeddings V*h + P*h; final LayerNorm 2h.
    encoder (BERT): the same per layer; embeddings (V + P + 2)*h + LayerNorm 2h; MLM head transform
    h^2 + h + LayerNorm 2h, and an output bias V.
    encoder-decoder (T5): no biases, RMSNorm weights only; encoder layer 4h^2 + 2hf + 2h, decoder layer
    8h^2 + 2hf + 3h (self + cross attention); one relative-position table (32 x heads) per stack;
    a final norm h per stack; shared token embeddings V*h.
    An untied output projection (decoder only) adds V*h.
    """
    c = config if isinstance(config, ModelConfig) else model_config(config, preset, vocab_size, **overrides)
    V, P, h, f, L, a = c.vocab_size, c.max_seq_len, c.d_model, c.d_ff, c.n_layers, c.n_heads
    head = 0 if c.tie_embeddings else V * h  # untied output projection (no bias in any family)
    attention = 4 * h * h + 4 * h  # q, k, v, o projections with biases
    mlp = h * f + f + f * h + h
    if c.family == "decoder":
        embedding = V * h + P * h
        body = L * (attention + mlp + 2 * 2 * h) + 2 * h
    elif c.family == "encoder":
        embedding = (V + P + BERT_TYPE_VOCAB_SIZE) * h
        mlm_head = h * h + h + 2 * h + V  # dense + LayerNorm + per-token output bias
        body = 2 * h + L * (attention + mlp + 2 * 2 * h) + mlm_head
    else:
        inner = a * c.head_dim  # == h
        self_attention = 4 * h * inner  # no biases in T5
        mlp_t5 = 2 * h * f
        encoder = L * (self_attention + mlp_t5 + 2 * h) + h
        decoder = L * (2 * self_attention + mlp_t5 + 3 * h) + h
        embedding = V * h + 2 * T5_RELATIVE_BUCKETS * a
        body = encoder + decoder
    embedding += head
    return ParameterCount(total=embedding + body, embedding=embedding, non_embedding=body)


def describe(config: ModelConfig) -> str:
    """One line: family, shape and predicted parameter count, for notebook printouts."""
    n = estimate_parameters(config)
    return (
        f"{config.family}: {config.n_layers} layers, d_model {config.d_model}, {config.n_heads} heads, "
        f"d_ff {config.d_ff}, context {config.max_seq_len}, vocab {config.vocab_size} -> "
        f"{n.total:,} parameters ({n.non_embedding:,} non-embedding)"
    )
