"""report.html: human headings (each once), whole numbers without decimals, wide tables in their own scroll box,
`lang="ja"` (Japanese headings, metric names and comparison sentence, `<html lang="ja">`), and a real run's report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from dldojo.cli import main  # noqa: E402
from dldojo.engine.report import _fmt, build_report  # noqa: E402


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def fake_run(tmp_path):
    run = tmp_path / "collab-bias" / "20260101-000000-quick-seed0"
    _write(run / "config.json", {"experiment": "collab-bias", "preset": "quick", "seed": 0,
                                 "config": {"epochs": 5, "lr": 0.005}})
    _write(run / "summary.json", {
        "experiment": "collab-bias", "preset": "quick", "seed": 0, "primary_metric": "test_mse", "direction": "min",
        "target": 0.78, "metrics": {"test_mse": 0.8135, "test_rmse": 0.9019},
        "timings": {"wall_seconds": 11.7}, "facts": {"threads": 1, "params": 600.0, "cpu": "x", "torch": "2"},
        "references": [{"metric": "test_mse", "value": 0.811, "source": "fastai", "note": "random 20 %"}]})
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "wall": s, "loss": 1.0 / (s + 1)}) + "\n"
                                               for s in range(5)))
    wide = [{f"a_rather_long_column_name_{k}": 123456.0 + k for k in range(30)}]
    _write(run / "tables" / "final_match.json", {"caption": "wide", "rows": wide})
    _write(run / "tables" / "movie_bias.json", {"caption": "bias", "rows": [{"rank": 1, "bias": 0.5}]})
    _write(run / "tables" / "top10_user1.json", {"caption": "", "rows": [{"rank": 1, "title": "Star Wars (1977)"}]})
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    (run / "figures").mkdir()
    fig.savefig(run / "figures" / "movie_bias.png")
    fig.savefig(run / "figures" / "learning_curves.png")  # 学習曲線 in Japanese, next to the logged curves
    plt.close(fig)
    return run


def _headings(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


def test_headings_are_human_and_appear_once(fake_run):
    page = build_report(fake_run).read_text()
    heads = _headings(page)
    assert "Movie bias" in heads and "Top-10 for user 1" in heads and "Final match" in heads
    assert "movie_bias" not in heads and "top10_user1" not in heads
    assert len(heads) == len(set(heads)), heads
    # the figure and the table called movie_bias sit under one heading, figure first
    section = page.split("<h2>Movie bias</h2>")[1].split("<h2>")[0]
    assert section.index("<img") < section.index("<table>")
    assert page.startswith("<!doctype html><html lang='en'>")


def test_whole_numbers_print_without_decimals(fake_run):
    assert (_fmt(600.0), _fmt(0.8135), _fmt(123456.5), _fmt(0.00012), _fmt(3)) == \
           ("600", "0.8135", "1.235e+05", "0.00012", "3")
    page = build_report(fake_run).read_text()
    assert ">600<" in page and "600.0000" not in page
    assert "1 thread," in page  # not "1 threads"


def test_wide_tables_scroll_inside_their_own_box(fake_run):
    page = build_report(fake_run).read_text()
    assert ".scroll{overflow-x:auto" in page
    assert page.count("<div class='scroll'><table>") == page.count("<table>")
    assert "a_<wbr>rather_<wbr>long" in page  # long snake_case headers may wrap


def test_japanese_report(fake_run):
    page = build_report(fake_run, lang="ja").read_text()
    assert page.startswith("<!doctype html><html lang='ja'>")
    heads = _headings(page)
    for heading in ("結果", "評価指標", "参照値との比較", "記録された値の推移", "学習曲線", "映画のバイアス",
                    "ユーザー 1 へのおすすめ上位 10 件"):
        assert heading in heads
    assert len(heads) == len(set(heads)), heads
    assert "テストMSE（平均二乗誤差）" in page and "full プリセットの目標 ≤ 0.78：未達" in page
    assert "参照値 0.811（fastai）に対してこの実行は 0.0025 悪い" in page


def test_report_command_takes_lang(fake_run, capsys):
    assert main(["report", str(fake_run), "--lang", "ja"]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    assert "<html lang='ja'>" in (fake_run / "report.html").read_text()
    assert main(["report", str(fake_run)]) == 0
    assert "<html lang='en'>" in (fake_run / "report.html").read_text()


@pytest.mark.parametrize("name", ["collab-bias", "alphazero-tictactoe"])
def test_a_real_smoke_run_report(name, synthetic_data):
    """A report of a smoke run in both languages: every section heading once, no raw float noise."""
    from dldojo.engine.launch import run_experiment

    summary = run_experiment(name, preset="smoke", quiet=True)
    for lang in ("en", "ja"):
        page = build_report(summary["run_dir"], lang=lang).read_text()
        heads = _headings(page)
        assert len(heads) == len(set(heads)), heads
        assert not any("_" in h for h in heads if h not in ("Config",)), heads
        assert not re.search(r">-?\d+\.0000<", page)


def test_a_per_step_curve_is_logged_at_a_bounded_number_of_steps(tmp_path):
    """`log_sampled`: the first step, every k-th and the last, at most ~CURVE_POINTS records however long the run."""
    from dldojo.engine.files import read_jsonl
    from dldojo.engine.run import CURVE_POINTS, RunContext

    for total in (7, 1000, 123_457):
        run_dir = tmp_path / str(total)
        run_dir.mkdir()
        ctx = RunContext(run_dir, "collab-bias", "smoke", 0, quiet=True)
        for step in range(1, total + 1):
            ctx.log_sampled(step, total, lr=step / total)
        steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")]
        assert steps[0] == 1 and steps[-1] == total and steps == sorted(set(steps))
        assert len(steps) == total if total <= CURVE_POINTS else CURVE_POINTS // 2 < len(steps) <= CURVE_POINTS + 2


def test_the_one_cycle_warm_up_shows_in_the_logged_learning_rate(synthetic_data):
    """fit logs the learning rate of a scheduled loop per step (not once an epoch, which hid the warm-up):
    collab-bias's one-cycle rises from lr/25 to its peak and falls again within its first epoch."""
    from dldojo.engine.files import read_jsonl
    from dldojo.engine.launch import run_experiment

    summary = run_experiment("collab-bias", preset="smoke", quiet=True, report=False)
    records = read_jsonl(Path(summary["run_dir"]) / "metrics.jsonl")
    lrs = [r["lr"] for r in records if "lr" in r]
    epochs = [r for r in records if "epoch" in r]
    assert len(lrs) > 2 * len(epochs)
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1 and lrs[0] < max(lrs) / 10 and lrs[-1] < max(lrs) / 2
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))  # the warm-up: rising step by step
