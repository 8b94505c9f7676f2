"""Execute the course notebooks headless, in order, and report.

  python scripts/run_notebooks.py                 # full version -> build/executed/*.ipynb + build/html/*.html
  python scripts/run_notebooks.py --in-place NB   # re-execute committed notebooks (what contributors commit)
  python scripts/run_notebooks.py --fast ...      # fast mode (COURSE_FAST=1)
  python scripts/run_notebooks.py --report build/course.md   # also write the table as markdown
  python scripts/run_notebooks.py --results benchmarks/RESULTS.md   # and keep it in a section of that file

Prints a table: notebook, seconds, device, passed/failed -- and on a CUDA GPU which cells allocated GPU memory
and the peak (an IPython hook in each kernel records ``torch.cuda.max_memory_allocated`` per cell; the
notebooks are not modified). Exit status 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from notebook_tools import clean_outputs  # noqa: E402  (scripts/, this file's folder)

#: Runs at the start of every kernel when tracing GPU use: after each cell, whether it allocated CUDA memory
#: (the allocator's peak rose above what was allocated when the cell started) and that peak.
_GPU_TRACE_STARTUP = """
import json, os, sys
_course_trace = {"path": os.environ["COURSE_GPU_TRACE"], "cells": [], "start": 0}

def _course_pre(info=None):
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
        _course_trace["start"] = torch.cuda.memory_allocated()

def _course_post(result):
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    peak = torch.cuda.max_memory_allocated()
    if peak > _course_trace["start"]:
        _course_trace["cells"].append({"cell": result.execution_count, "peak_bytes": peak})
        with open(_course_trace["path"], "w") as f:
            json.dump(_course_trace["cells"], f)

get_ipython().events.register("pre_run_cell", _course_pre)
get_ipython().events.register("post_run_cell", _course_post)
"""


def gpu_trace_env(folder: Path) -> Path:
    """Point IPYTHONDIR at ``folder`` with the tracing start-up file; return the trace file kernels write."""
    startup = folder / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-course-gpu-trace.py").write_text(_GPU_TRACE_STARTUP)
    os.environ["IPYTHONDIR"] = str(folder)
    trace = folder / "trace.json"
    os.environ["COURSE_GPU_TRACE"] = str(trace)
    return trace


def read_trace(trace: Path) -> list[dict]:
    """The cells of the last notebook that allocated GPU memory (and clear the file for the next)."""
    if not trace.exists():
        return []
    cells = json.loads(trace.read_text())
    trace.unlink()
    return cells


def execute(path: Path, timeout: int, kernel: str = "python3"):
    """Execute one notebook in its own folder; returns (notebook, error or None)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    sockets = tempfile.TemporaryDirectory(prefix="course-kernel-")
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(path.parent)}},
        record_timing=False, config=_kernel_config(sockets.name),
    )
    try:
        client.execute()
        clean_outputs(nb)  # committed outputs: what the cells printed, not every refresh of a progress bar
        return nb, None
    except CellExecutionError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return nb, "\n".join(lines[:3] + ["..."] + lines[-6:]) if len(lines) > 9 else "\n".join(lines) or repr(exc)
    except Exception as exc:  # kernel died, timeout, ...
        return nb, f"{type(exc).__name__}: {exc}"
    finally:
        sockets.cleanup()


def _kernel_config(folder: str):
    """Kernels that talk over Unix sockets in ``folder`` where the OS has them: private to this user, and
    no "Kernel is running over TCP without encryption" warning after every notebook (TCP on Windows)."""
    from traitlets.config import Config

    if os.name != "posix":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "kernel")}})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb, then labs)")
    ap.add_argument("--in-place", action="store_true", help="write executed notebooks back in place")
    ap.add_argument("--fast", action="store_true", help="fast mode (COURSE_FAST=1)")
    ap.add_argument("--out", default=str(ROOT / "build"), help="output folder (default: build/)")
    ap.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    ap.add_argument("--no-html", action="store_true", help="skip the HTML export")
    ap.add_argument("--report", default=None, help="also write the table as markdown to this file")
    ap.add_argument(
        "--results",
        default=None,
        help="also put the table into this markdown file (benchmarks/RESULTS.md), in the section of this mode and "
        "device, replacing that section's previous table and leaving the rest of the file as it is",
    )
    args = ap.parse_args(argv)

    os.environ["COURSE_TEXT_PROGRESS"] = "1"
    os.environ["COURSE_FAST"] = "1" if args.fast else "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import nbformat
    from tqdm.auto import tqdm

    from utils.env import get_device

    paths = [Path(p).resolve() for p in args.notebooks] or (
        sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted((ROOT / "labs").glob("*.ipynb"))
    )
    out = Path(args.out)
    device = get_device().type
    trace = gpu_trace_env(Path(tempfile.mkdtemp(prefix="course-ipython-"))) if device == "cuda" else None
    rows, gpu_cells = [], {}
    for path in tqdm(paths, desc="notebooks", unit="nb"):
        t0 = time.perf_counter()
        nb, err = execute(path, args.timeout)
        secs = time.perf_counter() - t0
        if trace is not None:
            gpu_cells[path.relative_to(ROOT).as_posix()] = read_trace(trace)
        if args.in_place:
            if err is None:
                nbformat.write(nb, path)
        else:
            (out / "executed").mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out / "executed" / path.name)
            if not args.no_html:
                from nbconvert import HTMLExporter

                (out / "html").mkdir(parents=True, exist_ok=True)
                html, _ = HTMLExporter().from_notebook_node(nb)
                (out / "html" / path.with_suffix(".html").name).write_text(html)
        rows.append((path.relative_to(ROOT).as_posix(), secs, device, "passed" if err is None else "FAILED"))
        if err:
            tqdm.write(f"{path.name}: {err}")

    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'notebook':<{w}}  {'seconds':>8}  {'device':<6}  result")
    for name, secs, dev, res in rows:
        print(f"{name:<{w}}  {secs:>8.1f}  {dev:<6}  {res}")
    failed = sum(r[3] != "passed" for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed")
    table = report_markdown(rows, gpu_cells if trace is not None else None, args.fast)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(table)
    if args.results:
        key = f"{'fast' if args.fast else 'full'}-{device}"
        results = Path(args.results)
        old = results.read_text() if results.exists() else ""
        results.write_text(update_results(old, key, f"Run of {time.strftime('%Y-%m-%d')}. " + table))
        print(f"table written to the '{key}' section of {results}")
    return 1 if failed else 0


#: The heading each section's key gets in the results file.
_SECTION_TITLES = {"full-cuda": "The whole course on a GPU (`make run-gpu`)", "fast-cuda": "The course in fast mode on a GPU",
                   "full-cpu": "The whole course on the CPU", "fast-cpu": "The course in fast mode on the CPU"}


def update_results(text: str, key: str, table: str) -> str:
    """``text`` with the section of ``key`` holding ``table``: the lines between its two markers are replaced
    (the rest of the file is kept byte for byte); a file without that section gets it appended at the end."""
    begin, end = f"<!-- course-run:{key}:begin -->", f"<!-- course-run:{key}:end -->"
    block = f"{begin}\n{table.rstrip()}\n{end}"
    if begin in text and end in text and text.index(begin) < text.index(end):
        head, rest = text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    if begin in text or end in text:
        raise SystemExit(f"--results: the file has only one of the markers {begin} / {end} (or them in the wrong order)")
    title = _SECTION_TITLES.get(key, f"Course run ({key})")
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + f"## {title}\n\n{block}\n"


def report_markdown(rows, gpu_cells: dict | None, fast: bool) -> str:
    """The per-notebook table as markdown (with GPU columns when ``gpu_cells`` was traced)."""
    import platform

    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.machine()})"
    lines = [f"{'Fast' if fast else 'Full'} mode, {dev}, torch {torch.__version__}, Python {platform.python_version()}.", ""]
    if gpu_cells is None:
        lines += ["| notebook | seconds | device | result |", "|---|---|---|---|"]
        lines += [f"| `{n}` | {s:.0f} | {d} | {r} |" for n, s, d, r in rows]
    else:
        lines += ["| notebook | seconds | device | cells that allocated GPU memory | peak GPU memory | result |",
                  "|---|---|---|---|---|---|"]
        for n, s, d, r in rows:
            cells = gpu_cells.get(n, [])
            used = ", ".join(str(c["cell"]) for c in cells) or "none"
            peak = f"{max(c['peak_bytes'] for c in cells) / 2**30:.2f} GiB" if cells else "-"
            lines.append(f"| `{n}` | {s:.0f} | {d} | {used} | {peak} | {r} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
