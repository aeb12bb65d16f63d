"""Plain-text output shared by the commands."""

from __future__ import annotations


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
