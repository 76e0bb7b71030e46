"""HTML pieces shared by the run report and the notebook views: number formatting, tables, embedded images.

`Table` is a list of row dicts that prints as a text table and renders as an HTML table in Jupyter; the
Python API (`dldojo.experiments()`, `dldojo.runs()`) and family actions (e.g. a top-10 list) return it.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MIME = {".png": "image/png", ".gif": "image/gif"}


def fmt(v: Any) -> str:
    """Whole numbers without decimals (600, not 600.0000); others with 4 decimals, or 4 significant digits when large
    or tiny."""
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.4f}" if 1e-3 <= abs(v) < 1e4 else f"{v:.4g}"
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return "" if v is None else str(v)


def header_html(name: str) -> str:
    """A column name that may wrap after its underscores (long snake_case headers made tables overflow)."""
    return html.escape(name).replace("_", "_<wbr>")


def cell_html(v: Any) -> str:
    numeric = isinstance(v, int | float) and not isinstance(v, bool)
    return f"<td class='num'>{html.escape(fmt(v))}</td>" if numeric else f"<td>{html.escape(fmt(v))}</td>"


def table_html(rows: list[dict], empty: str = "(empty)") -> str:
    """An HTML table with one column per key (in order of first appearance), numbers right-aligned."""
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    cols = list(dict.fromkeys(c for r in rows for c in r))
    head = "".join(f"<th>{header_html(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(cell_html(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def image_html(image: Path | bytes, alt: str = "", mime: str = "image/png", style: str = "") -> str:
    """An <img> with the picture embedded as base64: a PNG / GIF file, or the bytes of one."""
    if isinstance(image, Path | str):
        path = Path(image)
        mime, alt, image = MIME[path.suffix.lower()], alt or path.stem, path.read_bytes()
    data = base64.b64encode(image).decode()
    return (f"<img src='data:{mime};base64,{data}' alt='{html.escape(alt)}'"
            + (f" style='{html.escape(style)}'" if style else "") + ">")


class Table(list):
    """Rows (dicts): a text table in a terminal, an HTML table in Jupyter; still a plain list of dicts."""

    def __init__(self, rows: Iterable[dict] = (), caption: str = ""):
        super().__init__(rows)
        self.caption = caption

    def columns(self) -> list[str]:
        return list(dict.fromkeys(c for r in self for c in r))

    def __repr__(self) -> str:
        from dldojo.engine.console import format_table

        if not self:
            return f"{self.caption}\n(empty)" if self.caption else "(empty)"
        cols = self.columns()
        table = format_table([[fmt(r.get(c)) for c in cols] for r in self], cols)
        return f"{self.caption}\n{table}" if self.caption else table

    def _repr_html_(self) -> str:
        caption = f"<p>{html.escape(self.caption)}</p>" if self.caption else ""
        return caption + table_html(list(self))
