"""Display helpers: bytes in a chosen unit, plain-text tables that read the same in Jupyter and on GitHub."""

from __future__ import annotations

from utils.validate import check_choice, fail


def format_bytes(n_bytes: float, unit: str = "GB", digits: int = 1) -> str:
    """``n_bytes`` in ``unit`` ("B", "KB", "MB", "GB", "TB", or "GiB"/"MiB"), thousands separated."""
    units = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "MiB": 2**20, "GiB": 2**30}
    check_choice("unit", unit, units)
    return f"{n_bytes / units[unit]:,.{digits}f} {unit}"


def format_table(headers, rows) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned (reads well on GitHub too)."""
    headers = [str(h) for h in headers]
    rows = [[str(c) for c in row] for row in rows]
    if any(len(row) != len(headers) for row in rows):
        fail("rows", rows, f"rows of {len(headers)} cells each (one per header)")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])
