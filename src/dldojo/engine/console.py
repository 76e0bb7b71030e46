"""Plain-text output shared by the command-line commands of the engine and the families."""

from __future__ import annotations


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """Columns padded to their widest cell, a dashed rule under the header."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(x).ljust(w) for x, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
