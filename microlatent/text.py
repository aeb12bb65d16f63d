"""Plain-text output shared by the commands: aligned tables, CSV rows and JSON files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path


def text_table(rows: list[list[str]], left: int = 1, rule: bool = False) -> str:
    """Rows of cells as aligned columns two spaces apart: the first ``left`` columns left-aligned, the
    others right-aligned (numbers); ``rule``: a line of dashes under the first row (the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if rule and k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_csv(rows: list[dict], path) -> Path:
    """Rows (dicts with the same keys, in the columns' order) as CSV; floats with 6 significant digits."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def write_json(path, obj) -> Path:
    """``obj`` as indented JSON, atomically (a partial file never has the final name); NumPy numbers
    and arrays are written as plain numbers and lists, paths as strings."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
