"""`--lang ja`: Japanese metric names, headings and comparison sentence; Japanese glyphs in figures come from the
bundled font (matplotlib-fontja's IPAexGothic), never matplotlib's missing-glyph box."""

from __future__ import annotations

import io
import warnings

import pytest

from dldojo.cli import main
from dldojo.engine.lang import comparison_sentence, metric_name, section_title, text, title
from dldojo.engine.plotting import FONT_FAMILY, bundled_font_path, use_bundled_font


@pytest.mark.parametrize(("name", "ja"), [
    ("test_accuracy", "テスト精度"),
    ("test_bleu", "テストBLEU"),
    ("test_mse", "テストMSE（平均二乗誤差）"),
    ("eval_return_mean", "平均リターン（評価）"),
    ("test_accuracy_group_b2", "test_accuracy_group_b2"),  # unknown: English
    ("something_new", "something_new"),
])
def test_metric_names_in_japanese_fall_back_to_english(name, ja):
    assert metric_name(name, "ja") == ja
    assert metric_name(name) == name  # English stays the default


def test_human_titles_for_report_sections():
    assert title("movie_bias") == "Movie bias"
    assert title("top10_user1") == "Top-10 for user 1"
    assert title("movie_factors_pca") == "Movie factors (PCA)"
    assert section_title("top10_user42", "ja") == "ユーザー 42 へのおすすめ上位 10 件"
    assert section_title("confusion_matrix", "ja") == "混同行列"
    assert section_title("some_new_table", "ja") == "Some new table"
    assert text("Metrics", "ja") == "評価指標" and text("Metrics") == "Metrics"


SUMMARY = {"primary_metric": "test_mse", "direction": "min", "preset": "quick", "target": 0.78,
           "metrics": {"test_mse": 0.8135}, "timings": {}, "facts": {},
           "references": [{"metric": "test_mse", "value": 0.811, "source": "fastai", "note": ""}]}


def test_comparison_sentence_in_both_languages():
    en = comparison_sentence(SUMMARY)
    assert en.startswith("test_mse = 0.8135 (lower is better).")
    assert "Reference 0.811 (fastai): this run is 0.0025 worse" in en
    assert "Target ≤ 0.78 for the full preset: missed (this run is the quick preset" in en
    ja = comparison_sentence(SUMMARY, "ja")
    assert ja.startswith("この実行の テストMSE（平均二乗誤差）（test_mse） = 0.8135（小さいほど良い）。")
    assert "参照値 0.811（fastai）に対してこの実行は 0.0025 悪い" in ja
    assert "full プリセットの目標 ≤ 0.78：未達" in ja


def test_show_lang_ja(capsys):
    assert main(["show", "mnist-cnn", "--lang", "ja"]) == 0
    out = capsys.readouterr().out
    assert "評価指標: テスト精度 (test_accuracy) (大きいほど良い)" in out and "プリセット:" in out
    assert main(["show", "mnist-cnn"]) == 0
    assert "metric: test_accuracy (higher is better)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["show", "mnist-cnn", "--lang", "fr"])


JAPANESE_LABELS = ("学習曲線", "損失", "テスト精度（評価）", "エポック数", "翻訳：私は学生です。")


def _font_has(path: str, char: str) -> bool:
    from fontTools.ttLib import TTFont

    with TTFont(path, fontNumber=0, lazy=True) as font:
        return ord(char) in font.getBestCmap()


def test_japanese_glyphs_render_with_the_bundled_font():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    assert bundled_font_path() is not None, "matplotlib-fontja is a dependency (pyproject.toml)"
    assert use_bundled_font()
    assert FONT_FAMILY in matplotlib.rcParams["font.family"]
    # Each character is in the cmap of some font of the fallback chain matplotlib builds from font.family.
    chain = [font_manager.findfont(font_manager.FontProperties(family=[f]), fallback_to_default=False)
             for f in matplotlib.rcParams["font.family"]]
    for char in set("".join(JAPANESE_LABELS)) - {" "}:
        assert any(_font_has(path, char) for path in chain), f"no font in {chain} has {char!r}"
    # And matplotlib itself finds every glyph: its "Glyph ... missing from font(s)" warning becomes an error.
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*[Gg]lyph.*missing.*")
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [1.0, 0.5, 0.3], label=JAPANESE_LABELS[1])
        ax.set_title(JAPANESE_LABELS[0])
        ax.set_xlabel(JAPANESE_LABELS[3])
        ax.set_ylabel(JAPANESE_LABELS[2])
        ax.text(0.1, 0.8, JAPANESE_LABELS[4])
        ax.legend()
        fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")
        plt.close(fig)


def test_without_the_bundled_font_matplotlib_would_draw_boxes():
    """The check above can fail: DejaVu Sans alone has no kana or kanji."""
    from matplotlib import font_manager

    dejavu = font_manager.findfont(font_manager.FontProperties(family=["DejaVu Sans"]))
    assert not any(_font_has(dejavu, c) for c in "学習曲線損失")


# ----- docs/ja: every code location, test, command and results file it names exists -----

import re  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS_JA = sorted((ROOT / "docs" / "ja").glob("*.md"))


def _defined_names(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_docs_ja_exist_with_a_page_per_family():
    from dldojo.engine import registry

    pages = {p.stem for p in DOCS_JA}
    assert {"README", "errata", "scratch"} <= pages
    families = {exp.family for exp in registry.load_all().values() if exp.family}
    assert families <= pages, f"`dldojo show --lang ja` points at docs/ja/<family>.md: missing {families - pages}"


@pytest.mark.parametrize("page", DOCS_JA, ids=lambda p: p.name)
def test_docs_ja_references_exist(page):
    from dldojo.engine import registry

    text_ = page.read_text()
    experiments = registry.load_all()
    token = re.compile(r"(?P<src>src/dldojo/[\w/]+\.py)` の (?P<names>(?:`[\w.]+`(?:, )?)+)"
                       r"|(?P<tfile>tests/\w+\.py)(?:::(?P<tname>test_\w+))?"
                       r"|`(?P<bare>test_\w+)`"
                       r"|dldojo run (?P<exp>[\w-]+)"
                       r"|(?P<result>results/[\w.-]+\.(?:json|md))")
    test_file = None
    checked = 0
    for m in token.finditer(text_):
        if m["src"]:
            defined = _defined_names(ROOT / m["src"])
            for name in re.findall(r"`([\w.]+)`", m["names"]):
                assert name.split(".")[0] in defined, f"{page.name}: {m['src']} has no {name}"
        elif m["tfile"]:
            test_file = ROOT / m["tfile"]
            assert test_file.exists(), f"{page.name}: {m['tfile']}"
            if m["tname"]:
                assert m["tname"] in _defined_names(test_file), f"{page.name}: {m['tfile']}::{m['tname']}"
        elif m["bare"]:
            assert test_file is not None and m["bare"] in _defined_names(test_file), \
                f"{page.name}: {m['bare']} not in {test_file}"
        elif m["exp"]:
            assert m["exp"] in experiments, f"{page.name}: dldojo run {m['exp']}"
        elif m["result"]:
            assert (ROOT / m["result"]).exists(), f"{page.name}: {m['result']}"
        checked += 1
    assert checked or page.stem == "README"
