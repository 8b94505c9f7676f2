"""Files and folders that are written whole or not at all, and folders that know when they were damaged.

Checkpoints (:mod:`utils.checkpoint`) and the caches of converted models and trained tokenizers
(:mod:`utils.pretrained`, :mod:`utils.tokenizer`) are folders. Each is written under a temporary name beside
its final path and renamed into place, so a run killed while writing never leaves half of one; and each
holds a ``manifest.json`` with the size and SHA-256 of every file, checked when it is read back, so flipped
bytes or a truncated file are reported (naming the file) instead of loading garbage.

The manifest also marks a folder as the course's own: code that replaces a folder first checks for it, and
refuses to touch anything else (a folder of notes given by mistake as a checkpoint path is never deleted).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

#: The file, inside each folder, that lists the others with their size and hash.
MANIFEST = "manifest.json"
#: Written into every manifest: what tells a course folder from any other.
MANIFEST_FORMAT = "llm-pretraining-course"


class IntegrityError(ValueError):
    """A course folder is incomplete or damaged (a file missing, truncated or changed)."""


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_path(path) -> None:
    """Flush a file or a folder entry to disk (so a power cut after a rename keeps what was renamed)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def write_manifest(folder, kind: str, format_version: int = 1) -> dict:
    """Hash every file of ``folder`` (flushing each to disk) into ``folder/manifest.json``; return it."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        fsync_path(path)
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    manifest = {"format": MANIFEST_FORMAT, "kind": kind, "format_version": format_version, "files": files}
    with open(folder / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    fsync_path(folder)
    return manifest


def read_manifest(folder) -> dict | None:
    """The manifest of a course folder, or None when ``folder`` has none (or an unreadable one)."""
    try:
        with open(Path(folder) / MANIFEST) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT
    return manifest if ok and isinstance(manifest.get("files"), dict) else None


def is_course_folder(folder, kind: str) -> bool:
    """Whether ``folder`` carries a course manifest of ``kind`` (contents not verified)."""
    manifest = read_manifest(folder)
    return manifest is not None and manifest.get("kind") == kind and "format_version" in manifest


def verify_folder(folder, kind: str, required=()) -> dict:
    """Check every file ``folder``'s manifest lists (size, then SHA-256) and that ``required`` are listed.

    Returns the manifest; raises :class:`IntegrityError` naming the first bad file."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("kind") != kind:
        raise IntegrityError(
            f"{str(folder / MANIFEST)!r} is missing or not a course {kind} manifest: the folder was not written "
            "by this course's code (or by an older version of it), so its contents cannot be verified"
        )
    files = manifest["files"]
    for name in required:
        if name not in files:
            raise IntegrityError(f"{str(folder / name)!r} is missing from the {kind} (its manifest lists no such file)")
    for name, meta in files.items():
        path = folder / name
        if not path.is_file():
            raise IntegrityError(f"{str(path)!r} is missing: the {kind} is incomplete")
        size = path.stat().st_size
        if size != meta.get("size"):
            raise IntegrityError(f"{str(path)!r} has {size} bytes, its manifest says {meta.get('size')}: damaged")
        if file_sha256(path) != meta.get("sha256"):
            raise IntegrityError(f"{str(path)!r} does not match its SHA-256 in the manifest: the file is damaged")
    return manifest


def write_text_atomically(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename: a reader (or a run killed while
    writing) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ temporary folders


def _temp_prefix(name: str) -> str:
    return f".{name}.tmp-"


def make_temp_dir(final: Path) -> Path:
    """A fresh temporary folder beside ``final``, named after it and this process (so that another
    process can tell a leftover of a killed run from one being written right now)."""
    return Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(final.name)}{os.getpid()}-", dir=final.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_dirs(final: Path) -> list[Path]:
    """Delete the temporary folders :func:`make_temp_dir` made for ``final`` in processes that are gone
    (a run killed while saving leaves one, e.g. ~420 MB for a SmolLM2 conversion). Returns them."""
    pattern = re.compile(re.escape(_temp_prefix(final.name)) + r"(\d+)-")
    # earlier versions named them ".<name>.<8 random characters>" without a process id: removed after a day
    legacy = re.compile(re.escape(f".{final.name}.") + r"[a-z0-9_]{8}$")
    removed = []
    if not final.parent.is_dir():
        return removed
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if not entry.is_dir():
            continue
        if match:
            stale = int(match.group(1)) != os.getpid() and not _alive(int(match.group(1)))
        else:
            stale = bool(legacy.match(entry.name)) and time.time() - entry.stat().st_mtime > 86400
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def save_atomically(folder, *objects, kind: str = "cache") -> None:
    """``save_pretrained`` every object (model, tokenizer, ...) into a temporary sibling of ``folder``, add a
    manifest, then rename it into place: a crash or a concurrent process never leaves a half-written entry.

    Raises OSError when the cache cannot be written (a read-only folder): callers keep the objects in
    memory and say so."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(folder)
    tmp = make_temp_dir(folder)
    try:
        for obj in objects:
            obj.save_pretrained(str(tmp))
        write_manifest(tmp, kind)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first: keep its copy
            if not folder.exists():
                raise
        fsync_path(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def discard(folder: Path) -> None:
    """Delete a damaged cache folder (callers pass only folders they compute inside the course cache).
    Renamed aside first, so a concurrent reader never sees half of one."""
    aside = folder.with_name(f"{_temp_prefix(folder.name)}{os.getpid()}-discard")
    try:
        os.replace(folder, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


# ---------------------------------------------------------------------------------------- caches


class CacheWarning(UserWarning):
    """A cache entry was damaged (and is rebuilt), or could not be written (the result stays in memory)."""


def _shown(folder: Path) -> str:
    """The folder relative to the course cache (no machine paths in notebook outputs), else as given."""
    from utils.env import cache_dir

    try:
        return f"<course cache>/{folder.relative_to(cache_dir()).as_posix()}"
    except (ValueError, OSError):
        return str(folder)


def load_cached(folder, load, required=()):
    """``load(folder)`` when ``folder`` holds a complete, verified cache entry; None when there is none.

    An entry that fails verification (a file missing, truncated or changed, or written before entries had
    a manifest) or that ``load`` cannot parse is deleted with a :class:`CacheWarning` naming the folder,
    and None returned: the caller rebuilds it (instead of failing the same way on every later run)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    try:
        verify_folder(folder, "cache", required)
        return load(folder)
    except Exception as exc:  # IntegrityError, JSONDecodeError, safetensors / tokenizers parse errors, ...
        import warnings

        warnings.warn(
            f"the cache entry {_shown(folder)} is damaged or incomplete ({type(exc).__name__}: "
            f"{str(exc).replace(str(folder), '...')}); rebuilding it",
            CacheWarning,
            stacklevel=3,
        )
        discard(folder)
        return None


def store_cached(folder, *objects) -> bool:
    """:func:`save_atomically` into the cache; on a read-only or full disk warn and return False (the
    caller keeps using the objects it has in memory; the next session builds them again)."""
    folder = Path(folder)
    try:
        save_atomically(folder, *objects)
        return True
    except OSError as exc:
        import warnings

        warnings.warn(
            f"could not write the cache entry {_shown(folder)} ({type(exc).__name__}: {exc.strerror or exc}): "
            "using it from memory only; the next session builds it again",
            CacheWarning,
            stacklevel=3,
        )
        return False
