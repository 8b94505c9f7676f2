"""Execute the course notebooks headless, in order, and report.

  python scripts/run_notebooks.py                 # full version -> build/executed/*.ipynb + build/html/*.html
  python scripts/run_notebooks.py --in-place NB   # re-execute committed notebooks (what contributors commit)
  python scripts/run_notebooks.py --fast ...      # fast mode (COURSE_FAST=1)

Prints a table: notebook, seconds, device, passed/failed. Exit status 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def execute(path: Path, timeout: int, kernel: str = "python3"):
    """Execute one notebook in its own folder; returns (notebook, error or None)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    try:
        client.execute()
        return nb, None
    except CellExecutionError as exc:
        return nb, str(exc).splitlines()[0] if str(exc) else repr(exc)
    except Exception as exc:  # kernel died, timeout, ...
        return nb, f"{type(exc).__name__}: {exc}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb, then labs)")
    ap.add_argument("--in-place", action="store_true", help="write executed notebooks back in place")
    ap.add_argument("--fast", action="store_true", help="fast mode (COURSE_FAST=1)")
    ap.add_argument("--out", default=str(ROOT / "build"), help="output folder (default: build/)")
    ap.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    ap.add_argument("--no-html", action="store_true", help="skip the HTML export")
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
    rows = []
    for path in tqdm(paths, desc="notebooks", unit="nb"):
        t0 = time.perf_counter()
        nb, err = execute(path, args.timeout)
        secs = time.perf_counter() - t0
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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
