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
