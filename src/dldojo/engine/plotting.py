"""Matplotlib set-up shared by every figure dldojo draws: a bundled Japanese font as a per-glyph fallback.

Without a CJK font matplotlib draws Japanese text (axis labels, translated tokens) as empty boxes. The dependency
`matplotlib-fontja` ships IPAexGothic (IPA Font License v1.0); `use_bundled_font()` registers that file with
matplotlib and appends its family to `font.family`, so Latin text keeps the default font (DejaVu Sans) and only
glyphs it lacks come from IPAexGothic (matplotlib ≥ 3.6 falls back glyph by glyph along `font.family`).

The package is located without importing it: importing `matplotlib_fontja` replaces `font.family` globally, which
would change the look of a notebook user's own plots. The font must be active before a figure's texts are created
(a Text reads `font.family` when it is made), so the run context calls this when a run starts, and the report
builder before it draws.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

FONT_FAMILY = "IPAexGothic"
FONT_FILE = "ipaexg.ttf"


def bundled_font_path() -> Path | None:
    """The IPAexGothic file inside the installed `matplotlib-fontja` package (None when it is not installed)."""
    spec = importlib.util.find_spec("matplotlib_fontja")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / FONT_FILE
    return path if path.is_file() else None


def use_bundled_font() -> bool:
    """Register the bundled Japanese font and add it as the last fallback of `font.family` (idempotent).
    Returns False when the font package is missing (figures then work, with boxes for Japanese glyphs)."""
    import matplotlib
    from matplotlib import font_manager

    path = bundled_font_path()
    if path is None:
        return False
    if not any(Path(f.fname) == path for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(str(path))
    families = list(matplotlib.rcParams["font.family"])
    if FONT_FAMILY not in families:
        matplotlib.rcParams["font.family"] = [*families, FONT_FAMILY]
    return True


# Offsets (in points) tried for a label, nearest first: right, left, above, below, then the diagonals, at growing
# distances. A label moved away from its point gets a thin leader line.
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
_RADII = (5, 14, 26, 40, 56)


def label_points(ax, xy, labels, avoid=(), fontsize: float = 7, pad: float = 2.0, marker_radius: float = 2.5
                 ) -> list:
    """Write `labels[i]` next to the point `xy[i]` (data coordinates) so that no two labels overlap, no label
    covers a point of `xy` or `avoid` (e.g. the unlabelled points of a scatter; `marker_radius` in points) and
    each stays inside the axes where it can: a greedy search over offsets in `_DIRECTIONS` × `_RADII`, labels
    placed in the order given (put the important ones first). A label that fits nowhere takes the offset where
    it overlaps least. Returns the annotations."""
    import numpy as np
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(np.asarray(xy, dtype=float).reshape(-1, 2))
    dot = marker_radius * fig.dpi / 72
    others = ax.transData.transform(np.asarray(avoid, dtype=float).reshape(-1, 2))
    obstacles = [Bbox.from_extents(x - dot, y - dot, x + dot, y + dot) for x, y in np.concatenate([points, others])]
    frame = ax.get_window_extent(renderer)
    placed = []
    for (x, y), label in zip(points, labels):
        ann = ax.annotate(label, ax.transData.inverted().transform((x, y)), xytext=(0, 0),
                          textcoords="offset points", fontsize=fontsize,
                          arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkA": 0, "shrinkB": 2})
        best = None
        for radius in _RADII:
            for dx, dy in _DIRECTIONS:
                ann.set_position((dx * radius, dy * radius))
                ann.set_horizontalalignment({1: "left", -1: "right", 0: "center"}[dx])
                ann.set_verticalalignment({1: "bottom", -1: "top", 0: "center"}[dy])
                box = _text_box(ann, renderer).padded(pad)
                cost = sum(_overlap(box, other) for other in obstacles) + _outside(box, frame)
                if best is None or cost < best[0]:
                    best = (cost, radius, dx, dy)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        _, radius, dx, dy = best
        ann.set_position((dx * radius, dy * radius))
        ann.set_horizontalalignment({1: "left", -1: "right", 0: "center"}[dx])
        ann.set_verticalalignment({1: "bottom", -1: "top", 0: "center"}[dy])
        if radius == _RADII[0]:  # next to its point: no leader line needed
            ann.arrow_patch.set_visible(False)
        obstacles.append(_text_box(ann, renderer).padded(pad))
        placed.append(ann)
    return placed


def _text_box(ann, renderer):
    """The window extent of an annotation's text alone (`Annotation.get_window_extent` adds its leader line)."""
    from matplotlib.text import Text

    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def _overlap(a, b) -> float:
    """Area (pixels²) where two boxes overlap."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _outside(box, frame) -> float:
    """Area (pixels²) of `box` outside `frame`."""
    return box.width * box.height - _overlap(box, frame)
