"""A self-contained HTML report for a run: summary, metrics next to references, curves, pictures."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dldojo.engine.errors import DojoError  # noqa: E402
from dldojo.engine.files import read_json, read_jsonl, write_text_atomic  # noqa: E402

SKIP_KEYS = {"step", "wall", "epoch"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def curves_png(records: list[dict]) -> str | None:
    keys = sorted({k for r in records for k, v in r.items() if k not in SKIP_KEYS and isinstance(v, int | float)})
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 30 else None, ms=3)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>(empty)</p>"
    cols = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return "" if v is None else str(v)


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise DojoError(f"{run_dir} is not a dldojo run directory (no config.json).")
    config = read_json(config_path)
    summary_path = run_dir / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else None
    records = read_jsonl(run_dir / "metrics.jsonl")

    from dldojo.engine import registry
    from dldojo.engine.reload import summary_value

    experiment = registry.load_all().get(config["experiment"])
    parts = [f"<h1>{html.escape(config['experiment'])}</h1>"]
    if experiment is not None:
        parts.append(f"<p><b>Topic:</b> {html.escape(experiment.topic)}<br><b>Source:</b> "
                     f"{html.escape(experiment.paper)}</p>")
    parts.append(f"<p>preset <b>{html.escape(str(config['preset']))}</b>, seed {html.escape(str(config['seed']))}</p>")
    if summary is None:
        parts.append("<p><b>This run has not finished</b> (no summary.json); curves show progress so far.</p>")
    else:
        timings, facts = summary.get("timings", {}), summary.get("facts", {})
        parts.append(f"<p>wall time {_fmt(timings.get('wall_seconds'))} s on {html.escape(_fmt(facts.get('threads')))} "
                     f"threads, {html.escape(str(facts.get('cpu', '')))} {html.escape(str(facts.get('cpu_isa', '')))}, "
                     f"torch {html.escape(str(facts.get('torch', '')))}, "
                     f"commit {html.escape(str(facts.get('commit') or 'unknown'))}</p>")
        rows = [{"metric": k, "value": v} for k, v in summary["metrics"].items()]
        parts.append("<h2>Metrics</h2><p>Determined by the seed (and the CPU kind and thread count).</p>" + _table(rows))
        parts.append("<h2>Timings</h2>" + _table([{"timing": k, "value": v} for k, v in timings.items()]))
        shown = {k: v for k, v in facts.items() if k not in ("cpu", "torch", "commit")}
        parts.append("<h2>Facts</h2>" + _table([{"fact": k, "value": v} for k, v in shown.items()]))
        primary = summary["primary_metric"]
        value = summary_value(summary, primary)
        ref_rows = []
        for ref in summary.get("references", []):
            ours = summary_value(summary, ref["metric"])
            ref_rows.append({"metric": ref["metric"], "reference": ref["value"], "ours": ours,
                             "source": ref["source"], "note": ref["note"]})
        if summary.get("target") is not None and value is not None:
            ok = value <= summary["target"] if summary["direction"] == "min" else value >= summary["target"]
            ref_rows.append({"metric": primary, "reference": summary["target"], "ours": value,
                             "source": "dldojo target (full preset)",
                             "note": ("met" if ok else "missed") + (" (this run is not the full preset)"
                                                                    if config["preset"] != "full" else "")})
        if ref_rows:
            parts.append("<h2>Compared with</h2>" + _table(ref_rows))
    curves = curves_png(records)
    if curves:
        parts.append(f"<h2>Training curves</h2><img src='data:image/png;base64,{curves}'>")
    for table_path in sorted((run_dir / "tables").glob("*.json")):
        table = read_json(table_path)
        parts.append(f"<h2>{html.escape(table_path.stem)}</h2><p>{html.escape(table.get('caption', ''))}</p>"
                     + _table(table["rows"]))
    for fig_path in sorted((run_dir / "figures").glob("*.png")):
        data = base64.b64encode(fig_path.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(fig_path.stem)}</h2><img src='data:image/png;base64,{data}'>")
    parts.append("<h2>Config</h2>" + _table([{"key": k, "value": v} for k, v in config["config"].items()]))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left}img{max-width:100%}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(config['experiment'])}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    return write_text_atomic(run_dir / "report.html", page)
