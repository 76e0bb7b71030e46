"""A self-contained HTML report for a run: summary, metrics next to references, curves, pictures.

`build_report(run_dir, lang="en")`; `lang="ja"` gives Japanese headings, metric names and comparison sentence
(`engine.lang`) and declares `<html lang="ja">`. Tables and figures of the same name (e.g. `movie_bias`) share one
heading, made human from the file name (`engine.lang.title`); wide tables scroll inside their own box. Clips saved
with `RunContext.save_audio` (audio/<section>/*.wav) play in <audio controls> players in the section of that name.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dldojo.engine.display import fmt as _fmt, image_html as _image, table_html  # noqa: E402
from dldojo.engine.errors import DojoError  # noqa: E402
from dldojo.engine.files import read_json, read_jsonl, write_text_atomic  # noqa: E402
from dldojo.engine.lang import check_lang, comparison_sentence, metric_name, section_title, text  # noqa: E402
from dldojo.engine.plotting import use_bundled_font  # noqa: E402

SKIP_KEYS = {"step", "wall", "epoch"}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans JP","Hiragino Sans","Yu Gothic",sans-serif;
 max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:0.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:0.15em}
.scroll{overflow-x:auto;max-width:100%;margin:0.5em 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.num{text-align:right;white-space:nowrap}
img{max-width:100%;height:auto}
.comparison{background:#f6f8fa;border-left:4px solid #888;padding:0.5em 0.8em}
.caption{color:#444}
.clips{display:flex;flex-wrap:wrap;gap:0.3em 1.2em}.clip{margin:0.2em 0}.clip figcaption{font-size:0.85em;color:#444}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def curves_png(records: list[dict], lang: str = "en") -> str | None:
    keys = sorted({k for r in records for k, v in r.items() if k not in SKIP_KEYS and isinstance(v, int | float)})
    if not keys:
        return None
    use_bundled_font()
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 30 else None, ms=3)
        name = metric_name(key, lang)
        ax.set_title(key if name == key else f"{name}\n{key}", fontsize=10)
        ax.set_xlabel(text("step", lang))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def audio_html(path: Path, label: str = "") -> str:
    """An <audio controls> player with the WAV file embedded as base64, under its label (default: the file name)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    label = label or Path(path).stem.replace("_", " ")
    return (f"<figure class='clip'><figcaption>{html.escape(label)}</figcaption>"
            f"<audio controls preload='none' src='data:audio/wav;base64,{data}'></audio></figure>")


def audio_sections(run_dir: Path) -> dict[str, list[Path]]:
    """The run's clips by report section: audio/<name>.wav is section <name>; audio/<section>/*.wav share one."""
    sections: dict[str, list[Path]] = {}
    root = run_dir / "audio"
    for p in sorted(root.rglob("*.wav")) if root.is_dir() else []:
        parts = p.relative_to(root).parts
        sections.setdefault(parts[0] if len(parts) > 1 else p.stem, []).append(p)
    return sections


def _table(rows: list[dict], lang: str = "en") -> str:
    return table_html(rows, empty=text("(empty)", lang))


def _named_rows(items: dict, label: str, lang: str) -> list[dict]:
    """Rows for a metrics / timings / facts table: Japanese adds the display name next to the identifier."""
    if lang == "ja":
        return [{text(label, lang): metric_name(k, lang), text("name", lang): k, text("value", lang): v}
                for k, v in items.items()]
    return [{label: k, "value": v} for k, v in items.items()]


def build_report(run_dir: Path, lang: str = "en") -> Path:
    """Write RUN_DIR/report.html (in English, or Japanese with lang="ja") and return its path."""
    lang = check_lang(lang)
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise DojoError(f"{run_dir} is not a dldojo run directory (no config.json).")
    config = read_json(config_path)
    summary_path = run_dir / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else None
    records = read_jsonl(run_dir / "metrics.jsonl")
    t = lambda key: html.escape(text(key, lang))  # noqa: E731

    from dldojo.engine import registry
    from dldojo.engine.reload import summary_value

    experiment = registry.load_all().get(config["experiment"])
    parts = [f"<h1>{html.escape(str(config['experiment']))}</h1>"]
    if experiment is not None:
        parts.append(f"<p><b>{t('Topic')}:</b> {html.escape(experiment.topic)}<br><b>{t('Source')}:</b> "
                     f"{html.escape(experiment.paper)}</p>")
    parts.append(f"<p>{t('preset')} <b>{html.escape(str(config['preset']))}</b>, {t('seed')} "
                 f"{html.escape(str(config['seed']))}</p>")
    if summary is None:
        parts.append(f"<p><b>{t('This run has not finished')}</b> "
                     f"{t('(no summary.json); curves show progress so far.')}</p>")
    else:
        timings, facts = summary.get("timings", {}), summary.get("facts", {})
        parts.append(f"<p>{t('wall time')} {_fmt(timings.get('wall_seconds'))} s, "
                     f"{html.escape(_fmt(facts.get('threads')))} "
                     f"{t('thread' if facts.get('threads') == 1 else 'threads')}, "
                     f"{html.escape(str(facts.get('cpu', '')))} {html.escape(_fmt(facts.get('cpu_isa', '')))}, "
                     f"torch {html.escape(str(facts.get('torch', '')))}, "
                     f"{t('commit')} {html.escape(str(facts.get('commit') or 'unknown'))}</p>")
        sentence = comparison_sentence(summary, lang)
        if sentence:
            parts.append(f"<h2>{t('Result')}</h2><p class='comparison'>{html.escape(sentence)}</p>")
        parts.append(f"<h2>{t('Metrics')}</h2><p>{t('Determined by the seed (and the CPU kind and thread count).')}</p>"
                     + _table(_named_rows(summary["metrics"], "metric", lang), lang))
        primary = summary["primary_metric"]
        value = summary_value(summary, primary)
        ref_rows = []
        for ref in summary.get("references", []):
            ours = summary_value(summary, ref["metric"])
            ref_rows.append({"metric": metric_name(ref["metric"], lang), "reference": ref["value"], "ours": ours,
                             "source": ref["source"], "note": ref["note"]})
        if summary.get("target") is not None and value is not None:
            ok = value <= summary["target"] if summary["direction"] == "min" else value >= summary["target"]
            note = text("met" if ok else "missed", lang)
            if config["preset"] != "full":
                note += " " + text("(this run is not the full preset)", lang)
            ref_rows.append({"metric": metric_name(primary, lang), "reference": summary["target"], "ours": value,
                             "source": text("dldojo target (full preset)", lang), "note": note})
        if ref_rows:
            ref_rows = [{text(k, lang): v for k, v in row.items()} for row in ref_rows]
            parts.append(f"<h2>{t('Compared with')}</h2>" + _table(ref_rows, lang))
        parts.append(f"<h2>{t('Timings')}</h2>" + _table(_named_rows(timings, "timing", lang), lang))
        shown = {k: v for k, v in facts.items() if k not in ("cpu", "torch", "commit")}
        parts.append(f"<h2>{t('Facts')}</h2>" + _table(_named_rows(shown, "fact", lang), lang))
    curves = curves_png(records, lang)
    if curves:
        parts.append(f"<h2>{t('Training curves')}</h2><img src='data:image/png;base64,{curves}' alt='curves'>")
    # one section per name: a figure and a table called e.g. `movie_bias` share their heading
    tables = {p.stem: p for p in sorted((run_dir / "tables").glob("*.json"))}
    figures: dict[str, list[Path]] = {}
    for p in sorted((run_dir / "figures").glob("*")):
        if p.suffix in (".png", ".gif"):
            figures.setdefault(p.stem, []).append(p)
    clips = audio_sections(run_dir)
    seen = {h for h in (text(k, lang) for k in ("Result", "Metrics", "Compared with", "Timings", "Facts",
                                                   "Training curves", "Config"))}
    for stem in sorted(set(tables) | set(figures) | set(clips), key=lambda s: (s not in figures and s not in clips, s)):
        heading = section_title(stem, lang)
        if heading in seen:  # two names that read the same: tell them apart by the file name
            heading = f"{heading} ({stem})"
        seen.add(heading)
        section = [f"<h2>{html.escape(heading)}</h2>"]
        section += [_image(p) for p in figures.get(stem, [])]
        if stem in clips:
            section.append("<div class='clips'>" + "".join(audio_html(p) for p in clips[stem]) + "</div>")
        if stem in tables:
            table = read_json(tables[stem])
            if table.get("caption"):
                section.append(f"<p class='caption'>{html.escape(table['caption'])}</p>")
            section.append(_table(table["rows"], lang))
        parts.append("".join(section))
    config_rows = [{text("key", lang): k, text("value", lang): v} for k, v in config["config"].items()]
    parts.append(f"<h2>{t('Config')}</h2>" + _table(config_rows, lang))
    page = (f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(str(config['experiment']))}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return write_text_atomic(run_dir / "report.html", page)
