"""Words for `--lang ja`: report and `dldojo show` headings, metric names, the sentence comparing a run with its
references and target. English is the default everywhere; a Japanese name that is missing falls back to English.

Metric names are translated from their parts, since every name is split-prefixed (README, "summary.json"):
`test_accuracy` = テスト + 精度, `eval_return_mean` = 評価 + 平均リターン, `test_accuracy_std` adds （標準偏差）.
A name whose rest is not in `BASE_JA` (or a whole name in `METRIC_JA`) stays English.
"""

from __future__ import annotations

LANGS = ("en", "ja")

# Report headings, table columns and phrases; `text(key, lang)` returns the English key itself for "en".
TEXT_JA = {
    "Topic": "トピック",
    "Source": "出典",
    "preset": "プリセット",
    "seed": "シード",
    "This run has not finished": "この実行は完了していません",
    "(no summary.json); curves show progress so far.": "（summary.json がありません）。曲線はここまでの経過です。",
    "wall time": "実行時間",
    "threads": "スレッド",
    "thread": "スレッド",
    "commit": "コミット",
    "Result": "結果",
    "Metrics": "評価指標",
    "Determined by the seed (and the CPU kind and thread count).":
        "シードで決まる値です（同じ CPU の種類・スレッド数なら再実行しても同じ）。",
    "Timings": "時間",
    "Facts": "実行環境と設定の事実",
    "Compared with": "参照値との比較",
    "Training curves": "記録された値の推移",
    "Config": "設定 (config)",
    "metric": "指標",
    "name": "名前",
    "value": "値",
    "timing": "時間の項目",
    "fact": "項目",
    "reference": "参照値",
    "ours": "この実行",
    "source": "出典",
    "note": "注記",
    "key": "キー",
    "dldojo target (full preset)": "dldojo の目標値（full プリセット）",
    "met": "達成",
    "missed": "未達",
    "(this run is not the full preset)": "（この実行は full プリセットではありません）",
    "(empty)": "（空）",
    "step": "ステップ",
    # dldojo show
    "source:": "出典:",
    "datasets:": "データセット:",
    "environment:": "環境:",
    "metric:": "評価指標:",
    "lower is better": "小さいほど良い",
    "higher is better": "大きいほど良い",
    "target": "目標",
    "with --preset full": "（--preset full で）",
    "reference:": "参照値:",
    "config keys (--set key=value):": "設定キー (--set key=value):",
    "presets:": "プリセット:",
    "(defaults)": "（既定値）",
    "Japanese guide:": "日本語ガイド:",
}

# Whole metric names whose parts do not translate well one by one.
METRIC_JA = {
    "test_bleu_teaching": "テストBLEU（教材の BLEU 実装）",
    "dev_bleu_copy_source": "開発BLEU（原文をそのまま出力した場合）",
    "test_accuracy_no_tta": "テスト精度（TTA なし）",
    "time_to_solve_seconds": "解決までの時間（秒）",
}

SPLITS_JA = {"test": "テスト", "dev": "開発", "eval": "評価", "train": "学習", "val": "検証"}

# The rest of a metric name after its split prefix.
BASE_JA = {
    "accuracy": "精度",
    "mse": "MSE（平均二乗誤差）",
    "rmse": "RMSE（二乗平均平方根誤差）",
    "bleu": "BLEU",
    "bleu_greedy": "BLEU（貪欲デコード）",
    "bleu_last_epoch": "BLEU（最終エポック）",
    "return_mean": "平均リターン",
    "return_min": "最小リターン",
    "return_std": "リターンの標準偏差",
    "return_last100_mean": "直近 100 エピソードの平均リターン",
    "periodic_best_return_mean": "定期評価で最良の平均リターン",
    "final_network_return_mean": "最終ネットワークの平均リターン",
    "episodes_to_solve": "解決までのエピソード数",
    "steps_to_solve": "解決までのステップ数",
    "episodes": "エピソード数",
    "steps": "ステップ数",
    "env_steps": "環境ステップ数",
    "solved": "解決した (1/0)",
    "best_step": "最良モデルのステップ",
    "best_generation": "最良の世代",
    "generations": "世代数",
    "diverged_runs": "発散した実行の数",
    "win_rate_vs_mcts": "MCTS に対する勝率",
    "win_rate_vs_random": "ランダム手に対する勝率",
    "draw_rate_vs_mcts": "MCTS に対する引き分け率",
    "loss_rate_vs_mcts": "MCTS に対する負け率",
    "losses_vs_minimax": "ミニマックスに対する負け数",
    "elo_final": "最終 Elo レーティング",
    "ensemble_accuracy": "アンサンブル精度",
    "scratch_accuracy": "精度（スクラッチ学習）",
    "frozen_accuracy": "精度（本体凍結＋新しいヘッド）",
    "finetune_accuracy": "精度（ファインチューニング）",
    "frozen_then_finetune_accuracy": "精度（凍結後にファインチューニング, LP-FT）",
    "bn_small_batch_gap": "BatchNorm の小バッチでの精度低下",
    "bn_excess_small_batch_gap": "BatchNorm の小バッチ精度低下（GroupNorm との差）",
    "dropout_interaction": "ドロップアウトとの相互作用",
}

# Bases written straight after the split (テスト精度); the others take it in brackets (平均リターン（評価）).
PREFIXED = {"accuracy", "mse", "rmse", "bleu", "bleu_greedy", "bleu_last_epoch", "ensemble_accuracy"}

# Names of timings and facts that a reader meets in every report.
OTHER_JA = {
    "wall_seconds": "実行時間（秒）",
    "train_seconds": "学習時間（秒）",
    "eval_seconds": "評価時間（秒）",
    "startup_seconds": "起動時間（秒）",
    "train_images_per_second": "学習スループット（画像/秒）",
    "train_tokens_per_second": "学習スループット（トークン/秒）",
    "train_steps_per_second": "学習スループット（ステップ/秒）",
    "threads": "スレッド数",
    "cpu_count": "CPU コア数",
    "cpu_isa": "CPU 命令セット",
    "cpu_family_model": "CPU ファミリー/モデル",
    "params": "パラメータ数",
    "macs": "積和演算数 (MACs)",
    "epochs": "エポック数",
    "world_size": "プロセス数",
    "bf16": "bf16 自動混合精度",
}


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        from dldojo.engine.errors import DojoError

        raise DojoError(f"unknown language {lang!r}; choose one of: {', '.join(LANGS)}")
    return lang


def text(key: str, lang: str = "en") -> str:
    """A heading or phrase in `lang` (the English key when there is no translation)."""
    return TEXT_JA.get(key, key) if lang == "ja" else key


def metric_name(name: str, lang: str = "en") -> str:
    """A metric's (or timing's / fact's) display name: `test_accuracy` -> テスト精度 for "ja"; unknown -> `name`."""
    if lang != "ja":
        return name
    if name in METRIC_JA:
        return METRIC_JA[name]
    if name in OTHER_JA:
        return OTHER_JA[name]
    std = name.endswith("_std")
    stem = name[:-4] if std else name
    split, _, rest = stem.partition("_")
    if split not in SPLITS_JA or rest not in BASE_JA:
        return name
    if rest in PREFIXED:  # テスト精度, テストBLEU
        return SPLITS_JA[split] + BASE_JA[rest] + ("（標準偏差）" if std else "")
    return f"{BASE_JA[rest]}（{SPLITS_JA[split]}{'、標準偏差' if std else ''}）"  # 平均リターン（評価）


def better(direction: str, lang: str = "en") -> str:
    return text("lower is better" if direction == "min" else "higher is better", lang)


def _num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.4g}"


def comparison_sentence(summary: dict, lang: str = "en") -> str:
    """One or two sentences: the run's primary metric, its reference(s) and the full-preset target, e.g.
    "test_mse = 0.8135 (lower is better). Reference 0.811 (fastai ...): this run is 0.0025 worse.
    Target ≤ 0.78 for the full preset: missed (this run is the quick preset)." Empty when nothing is known."""
    from dldojo.engine.reload import summary_value

    primary, direction = summary["primary_metric"], summary["direction"]
    value = summary_value(summary, primary)
    if value is None:
        return ""
    preset = summary.get("preset", "")
    ja = lang == "ja"
    label = metric_name(primary, lang)
    if ja and label != primary:
        label = f"{label}（{primary}）"
    parts = [f"{'この実行の ' if ja else ''}{label} = {_num(value)}{'（' if ja else ' ('}{better(direction, lang)}"
             f"{'）。' if ja else ').'}"]
    for ref in summary.get("references", []):
        ours = summary_value(summary, ref["metric"])
        if ours is None:
            continue
        diff = ours - ref["value"]
        good = diff <= 0 if direction == "min" else diff >= 0
        name = "" if ref["metric"] == primary else f"{metric_name(ref['metric'], lang)} "
        if abs(diff) < 1e-12:
            verdict = "同じ値" if ja else "equal"
        elif ja:
            verdict = f"この実行は {_num(abs(diff))} {'良い' if good else '悪い'}"
        else:
            verdict = f"this run is {_num(abs(diff))} {'better' if good else 'worse'}"
        if ja:
            parts.append(f"参照値 {name}{_num(ref['value'])}（{ref['source']}）に対して{verdict}"
                         f"（この実行は {ours:.4g}）。")
        else:
            parts.append(f"Reference {name}{_num(ref['value'])} ({ref['source']}): {verdict} (ours {ours:.4g}).")
    target = summary.get("target")
    if target is not None:
        met = value <= target if direction == "min" else value >= target
        sign = "≤" if direction == "min" else "≥"
        if ja:
            note = "" if preset == "full" else f"（この実行は {preset} プリセットなので目安です）"
            parts.append(f"full プリセットの目標 {sign} {_num(target)}：{'達成' if met else '未達'}{note}。")
        else:
            note = "" if preset == "full" else f" (this run is the {preset} preset, so this is only indicative)"
            parts.append(f"Target {sign} {_num(target)} for the full preset: {'met' if met else 'missed'}{note}.")
    return ("" if ja else " ").join(parts)


def title(identifier: str) -> str:
    """A human heading from a table or figure file name: `movie_bias` -> "Movie bias",
    `top10_user1` -> "Top-10 for user 1", `movie_factors_pca` -> "Movie factors (PCA)"."""
    import re

    words = identifier.replace("-", "_").split("_")
    out: list[str] = []
    for k, word in enumerate(words):
        if m := re.fullmatch(r"top(\d+)", word):
            out.append(f"top-{m.group(1)}")
        elif m := re.fullmatch(r"([a-z]+)(\d+)", word):
            out.append(f"for {m.group(1)} {m.group(2)}" if k > 0 and out and out[-1].startswith("top-")
                       else f"{m.group(1)} {m.group(2)}")
        elif word.lower() in ACRONYMS:
            out.append(ACRONYMS[word.lower()])
        else:
            out.append(word)
    text_ = " ".join(w for w in out if w)
    return text_[:1].upper() + text_[1:]


ACRONYMS = {"pca": "(PCA)", "bleu": "BLEU", "elo": "Elo", "a3c": "A3C", "a2c": "A2C", "mcts": "MCTS", "gif": "GIF"}


# Japanese headings for the tables and figures that several experiments write (others: the English title).
TITLE_JA = {
    "per_class_accuracy": "クラス別精度",
    "confusion_matrix": "混同行列",
    "predictions": "テスト画像の予測",
    "model": "モデル",
    "learning_curves": "学習曲線",
    "movie_factors_pca": "映画の因子の 2 次元表示（PCA）",
    "movie_bias": "映画のバイアス",
    "episode": "エピソード（アニメーション）",
    "episode_frames": "エピソードのフレーム",
    "generations": "世代ごとの記録",
    "final_match": "最終対局",
    "elo": "Elo レーティング",
    "attention_heatmaps": "アテンションの重み（ヒートマップ）",
    "attention_heatmap_tokens": "ヒートマップの軸のトークン",
    "cross_attention": "クロスアテンション",
    "cross_attention_tokens": "クロスアテンション図のトークン",
    "sample_translations": "翻訳例",
    "test_translations": "テスト文の翻訳例",
    "bleu": "BLEU",
    "dev_bleu_per_epoch": "エポックごとの開発BLEU",
    "variants": "転移学習の方式ごとの結果",
    "source": "事前学習モデル",
    "norm_study": "正規化手法の比較",
    "training_runs": "学習の一覧",
    "workers": "ワーカー",
    "a3c_vs_a2c": "A3C と A2C の比較",
}


def section_title(identifier: str, lang: str = "en") -> str:
    """The heading of a report section for a table or figure file name, in `lang`."""
    import re

    if lang == "ja":
        if identifier in TITLE_JA:
            return TITLE_JA[identifier]
        if m := re.fullmatch(r"top(\d+)_user(\d+)", identifier):
            return f"ユーザー {m.group(2)} へのおすすめ上位 {m.group(1)} 件"
        if identifier.endswith("_frames") and identifier[:-7] in TITLE_JA:
            return TITLE_JA[identifier[:-7]] + "（フレーム）"
    return title(identifier)
