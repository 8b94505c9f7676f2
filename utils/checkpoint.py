"""Training checkpoints that load without unpickling anything, written atomically.

A checkpoint is a folder:

* ``model.safetensors`` -- the model weights (``safetensors.torch.save_model``: tied weights stored once);
* ``state.safetensors`` -- every other tensor: AdamW's moments and step counts, RNG states, the GradScaler's
  and the training loop's running sums;
* ``state.json`` -- everything else (step, history, config, scheduler, optimizer hyper-parameters, data
  position), with ``{"__tensor__": key}`` where a tensor of ``state.safetensors`` belongs.

* ``manifest.json`` -- the size and SHA-256 of the three files (:mod:`utils.io`), verified on load: a
  damaged checkpoint raises a ``ValueError`` naming the file instead of loading garbage.

Neither format can run code when loaded (unlike ``torch.load`` of a pickle with ``weights_only=False``).
The folder is first written under a temporary name beside ``path`` and then renamed into place, so a run
killed while saving leaves the previous checkpoint intact. A kill in the instant between the two renames
leaves it under ``<name>.old``: loading falls back to it (with a warning) and the next save moves it back.
Only a course checkpoint (a folder with a checkpoint manifest) is ever replaced; anything else at ``path``
is refused with a ``ValueError``. Weights with a NaN or an infinity are never saved.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from utils.io import (
    fsync_path,
    is_course_folder,
    make_temp_dir,
    remove_stale_temp_dirs,
    verify_folder,
    write_manifest,
)

#: 2: adds manifest.json (sizes and hashes). Version-1 folders (no manifest) cannot be verified: retrain.
FORMAT_VERSION = 2
#: The manifest kind of a checkpoint folder, and the files it must list.
KIND = "checkpoint"
FILES = ("model.safetensors", "state.safetensors", "state.json")


# ------------------------------------------------------------------------- nested state <-> JSON + tensors


def _encode(obj, tensors: dict[str, torch.Tensor], prefix: str):
    """Replace tensors (into ``tensors``), tuples, int-keyed dicts and arrays by JSON-safe markers."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        if all(isinstance(k, int) for k in obj):  # e.g. optimizer state, keyed by parameter index
            return {"__intdict__": {str(k): _encode(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}}
        raise TypeError(f"cannot store a dict with mixed key types at {prefix!r}")
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint (no pickling)")


def _decode(obj, tensors: dict[str, torch.Tensor]):
    """Inverse of :func:`_encode`."""
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__intdict__" in obj:
        return {int(k): _decode(v, tensors) for k, v in obj["__intdict__"].items()}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ------------------------------------------------------------------------------------------------ RNG


def rng_state() -> dict:
    """The state of every RNG the training loop touches: torch CPU (dropout), CUDA, Python, NumPy."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where the same GPUs are visible)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------------------------- the folder


def old_path(path) -> Path:
    """Where a save keeps the previous checkpoint during the instant between its two renames."""
    path = Path(path)
    return path.with_name(f"{path.name}.old")


def check_checkpoint_dir(path, name: str = "path") -> Path:
    """Refuse a checkpoint path whose contents a save would destroy; make sure its folder is writable.

    Accepted: a path that does not exist yet, an empty folder, or a course checkpoint (which a save
    replaces). Anything else -- a file, a folder with other contents -- raises a ``ValueError`` naming
    ``name``: the course never deletes what it did not write."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ValueError(f"{name}={path!r} is not valid; accepted: a folder path (str or pathlib.Path)")
    path = Path(path).expanduser()
    for candidate in (path, old_path(path)):
        if candidate.is_symlink() or (candidate.exists() and not candidate.is_dir()):
            raise ValueError(
                f"{name}={str(path)!r} is not valid: {str(candidate)!r} is a file or a link, not a checkpoint folder; "
                "refusing to replace it. Accepted: a new or empty folder, or an earlier checkpoint"
            )
        if candidate.is_dir() and any(candidate.iterdir()) and not is_course_folder(candidate, KIND):
            raise ValueError(
                f"{name}={str(path)!r} is not valid: {str(candidate)!r} holds files that are not a course "
                "checkpoint (no checkpoint manifest.json); refusing to replace them. Accepted: a new or empty "
                "folder, or an earlier checkpoint"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = make_temp_dir(path)
        probe.rmdir()
    except OSError as exc:
        raise ValueError(f"{name}={str(path)!r} is not valid: its folder is not writable ({exc})") from None
    return path


def _recover(path: Path) -> None:
    """Move ``<name>.old`` back to ``<name>`` when a save was killed between its two renames."""
    old = old_path(path)
    if not path.exists() and is_course_folder(old, KIND):
        os.replace(old, path)
        warnings.warn(f"recovered the checkpoint {str(path)!r} from {str(old)!r} (a save was interrupted)", stacklevel=3)


def _remove_checkpoint(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):  # the empty folder a learner made for the run
        folder.rmdir()
    elif folder.exists():
        if not is_course_folder(folder, KIND):  # checked at the start too; a folder could change meanwhile
            raise ValueError(f"{str(folder)!r} is not a course checkpoint; refusing to delete it")
        shutil.rmtree(folder)


def _check_finite(tensors: dict[str, torch.Tensor], what: str, path: Path) -> None:
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"{what} {key!r} holds NaN or infinite values: refusing to save them over {str(path)!r} "
                "(the training diverged; the last good checkpoint is kept)"
            )


# ------------------------------------------------------------------------------------------ save/load


def save_checkpoint(
    path,
    model,
    optimizer=None,
    scheduler=None,
    *,
    step: int,
    history=None,
    data_state: dict | None = None,
    scaler=None,
    config: dict | None = None,
    extra: dict | None = None,
    rng: bool = True,
) -> Path:
    """Write a checkpoint folder at ``path`` (replacing a checkpoint that is there) and return its path.

    ``history``: a :class:`utils.train_state.History` (or anything with ``to_dict``) or a plain dict;
    ``data_state``: the batch iterator's ``state_dict()`` (its position); ``extra``: any other plain
    state (tensors allowed); ``rng``: also save the RNG states (see :func:`rng_state`). Raises ValueError
    when ``path`` holds something that is not a checkpoint, or the model or optimizer holds NaN/inf.
    """
    path = check_checkpoint_dir(path, "path")
    model_state = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    _check_finite(model_state, "model weight", path)
    tensors: dict[str, torch.Tensor] = {}
    state = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "history": history.to_dict() if hasattr(history, "to_dict") else history,
        "config": config,
        "data": _encode(data_state, tensors, "data"),
        "optimizer": _encode(optimizer.state_dict(), tensors, "optimizer") if optimizer is not None else None,
        "scheduler": _encode(scheduler.state_dict(), tensors, "scheduler") if scheduler else None,
        "scaler": _encode(scaler.state_dict(), tensors, "scaler") if scaler is not None else None,
        "rng": _encode(rng_state(), tensors, "rng") if rng else None,
        "extra": _encode(extra, tensors, "extra"),
    }
    _check_finite({k: v for k, v in tensors.items() if k.startswith("optimizer.")}, "optimizer state", path)
    _recover(path)
    remove_stale_temp_dirs(path)
    tmp = make_temp_dir(path)
    old = old_path(path)
    try:
        save_model(model, str(tmp / "model.safetensors"))
        save_file(tensors, str(tmp / "state.safetensors"))
        with open(tmp / "state.json", "w") as f:
            json.dump(state, f)
        write_manifest(tmp, KIND, FORMAT_VERSION)  # also flushes every file to disk
        if path.exists():
            _remove_checkpoint(old)  # a stale one, from a save killed after its second rename
            os.replace(path, old)  # a folder cannot be renamed onto a non-empty one: move the old aside
        os.replace(tmp, path)  # atomic: a reader sees the old folder or the new one, never half of one
        fsync_path(path.parent)
        _remove_checkpoint(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left if something above failed
    return path


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read back besides the weights and optimizer/scheduler states."""

    step: int  # optimizer steps completed when it was saved
    history: dict | None  # History.to_dict()
    data_state: dict | None  # the batch iterator's position
    config: dict | None  # the TrainConfig as a dict
    extra: dict = field(default_factory=dict)  # loop state (running sums), tensors included


def load_checkpoint(
    path, model=None, optimizer=None, scheduler=None, scaler=None, *, restore_rng: bool = True, device=None
) -> Checkpoint:
    """Load a folder written by :func:`save_checkpoint` into the objects given (each optional).

    Build the optimizer and the scheduler first, then load (the scheduler's constructor would otherwise
    overwrite the restored learning rate). ``device``: where the model's weights go (default: where the
    model's parameters are).
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ValueError(f"path={path!r} is not valid; accepted: a checkpoint folder path (str or pathlib.Path)")
    path = Path(path).expanduser()
    old = old_path(path)
    if not path.exists() and is_course_folder(old, KIND):
        warnings.warn(
            f"{str(path)!r} is missing but {str(old)!r} holds the checkpoint a save was replacing when it was "
            "interrupted: loading that one",
            stacklevel=2,
        )
        path = old
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r} (no such folder)")
    verify_folder(path, KIND, required=FILES)  # IntegrityError (a ValueError) naming a damaged file
    with open(path / "state.json") as f:
        state = json.load(f)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint format_version={state.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    tensors = load_file(str(path / "state.safetensors"))
    if model is not None:
        target = device if device is not None else next(model.parameters()).device
        try:
            load_model(model, str(path / "model.safetensors"), strict=True, device=str(target))
        except RuntimeError as exc:  # missing / unexpected / differently shaped weights
            raise ValueError(
                f"model does not match the checkpoint {str(path / 'model.safetensors')!r}: {exc}"
            ) from None
    if optimizer is not None:
        optimizer.load_state_dict(_decode(state["optimizer"], tensors))
    if scheduler is not None:
        scheduler.load_state_dict(_decode(state["scheduler"], tensors))
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(_decode(state["scaler"], tensors))
    if restore_rng and state.get("rng") is not None:
        set_rng_state(_decode(state["rng"], tensors))
    return Checkpoint(
        step=state["step"],
        history=state["history"],
        data_state=_decode(state["data"], tensors),
        config=state["config"],
        extra=_decode(state["extra"], tensors) or {},
    )
