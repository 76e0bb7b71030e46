"""Regenerate the results table in README.md from results/*.json (never type numbers by hand)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fmt_target(r: dict) -> str:
    if r["target"] is None or r["preset"] != "full" or r["sets"]:  # targets apply to the plain full preset
        return ""
    ok = r["max"] <= r["target"] if r["direction"] == "min" else r["min"] >= r["target"]
    return f"{'≤' if r['direction'] == 'min' else '≥'} {r['target']:g} ({'met' if ok else 'missed'})"


def result_files() -> list[Path]:
    """Results tracked by git (add a new results file before regenerating), else every file present."""
    import subprocess

    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "results/*.json"], capture_output=True,
                             text=True).stdout.split()
    return sorted(ROOT / t for t in tracked) if tracked else sorted((ROOT / "results").glob("*.json"))


def table() -> str:
    rows = ["| result | command | metric | value (mean; min–max over seeds) | target | wall s (max) | threads | cpu | commit |",
            "|---|---|---|---|---|---|---|---|---|"]
    for path in result_files():
        r = json.loads(path.read_text())
        spread = f"{r['mean']:.4f}" + (f" ({r['min']:.4f}–{r['max']:.4f}, {len(r['seeds'])} seeds)"
                                       if len(r["seeds"]) > 1 else "")
        rows.append(f"| {r['tag']} | `{r['command']}` | {r['metric']} | {spread} | {fmt_target(r)} | "
                    f"{r['wall_seconds_max']:.1f} | {r['threads']} | {machine(r)} | {r['commit']} |")
    machines = {(machine(r), r["cpu"]) for r in map(lambda p: json.loads(p.read_text()), result_files())}
    return "\n".join(rows) + ("\n\nMachines (2 cores each): " + "; ".join(f"{m} = {c}" for m, c in sorted(machines))
                             + ". Results from before engine v2 (commit 2a80157 and earlier) keep the metric names of their time (e.g. "
                               "`bn_small_batch_gap`, now `test_bn_small_batch_gap`). Results without an instruction-set list predate its recording (commit 6f716b0 "
                               "and earlier); the notes in results/ name their machine." if machines else "")


def machine(result: dict) -> str:
    """Short CPU name, with the instruction sets that set its speed when the result recorded them
    (a Zen 3 and a Zen 4 are both "AMD EPYC"; only the Zen 4 trains in bf16, ~3× faster here)."""
    cpu = result["cpu"]
    name = "AMD EPYC" if "AMD" in cpu else "Intel Xeon" if "Intel" in cpu else cpu
    if result.get("cpu_isa"):
        family_model = result.get("cpu_family_model")
        name += (f" {family_model}" if family_model else "") + f" [{', '.join(result['cpu_isa'])}]"
    return name


def experiments_table() -> str:
    from dldojo.engine import registry

    rows = ["| experiment | curriculum topic | dataset | metric | full-preset target | compared with |",
            "|---|---|---|---|---|---|"]
    for e in registry.load_all().values():
        target = f"{'≤' if e.direction == 'min' else '≥'} {e.target:g}" if e.target is not None else ""
        refs = "; ".join(f"{r.value:g} — {r.source}" for r in e.references)
        rows.append(f"| `{e.name}` | {e.topic} | {', '.join(e.datasets) or e.environment} | {e.metric} | {target} | {refs} |")
    return "\n".join(rows)


def throughput_table() -> str:
    """Image classifiers: training images/second on this machine, from every results file that has it (and the
    classifier's MACs and test accuracy: a VAE reports images/second too, but neither of those)."""
    rows = ["| result | preset | params | MACs / image | train img/s | test accuracy | wall s | threads | commit |",
            "|---|---|---|---|---|---|---|---|---|"]
    for path in result_files():
        r = json.loads(path.read_text())
        run = r["runs"][0]  # results before engine v2 kept params and img/s among the metrics
        m = {**run.get("facts", {}), **run.get("timings", {}), **run["metrics"]}
        if not {"train_images_per_second", "params", "macs", "test_accuracy"} <= m.keys() or r.get("budget_minutes"):
            continue  # (the equal-budget runs have their own table)
        rows.append(f"| {r['tag']} | {r['preset']} | {m['params'] / 1e6:.2f} M | {m['macs'] / 1e6:.0f} M | "
                    f"{m['train_images_per_second']:.0f} | {m['test_accuracy']:.4f} | {r['wall_seconds_max']:.1f} | "
                    f"{r['threads']} | {r['commit']} |")
    return "\n".join(rows)


BUDGET_FIGURE = "docs/figures/cifar10-budget.png"


def budget_results() -> dict[float, list[dict]]:
    """Results of `benchmarks/run.py --budget-table MINUTES`, by budget: the architecture table at equal budget."""
    by_budget: dict[float, list[dict]] = {}
    for path in result_files():
        r = json.loads(path.read_text())
        if r.get("budget_minutes"):
            by_budget.setdefault(r["budget_minutes"], []).append(r)
    return by_budget


def budget_table() -> str:
    """Every cifar10-<arch> trained for the same minutes on one machine: params, MACs, img/s, epochs reached,
    test accuracy (sorted by accuracy), and the accuracy-vs-MACs picture drawn from the same files."""
    by_budget = budget_results()
    if not by_budget:
        return ("No results yet: `python benchmarks/run.py --budget-table 10` (about two hours: eleven "
                "architectures, ten minutes each), then `python benchmarks/table.py`.")
    parts = []
    for minutes, results in sorted(by_budget.items()):
        machines = sorted({machine(r) for r in results})
        rows = [f"**{minutes:g} minutes each** (full preset with `time_budget_minutes={minutes:g}`, seed "
                f"{results[0]['seeds'][0]}, {results[0]['threads']} threads; {'; '.join(machines)}"
                + ("" if len(machines) == 1 else " — different machines: do not compare these rows") + "):", "",
                "| architecture | params | MACs / image | train img/s | epochs reached | test accuracy | wall s | commit |",
                "|---|---|---|---|---|---|---|---|"]
        for r in sorted(results, key=lambda r: -r["mean"]):
            run = r["runs"][0]
            m = {**run["facts"], **run["timings"], **run["metrics"]}
            rows.append(f"| {r['experiment'].removeprefix('cifar10-')} | {m['params'] / 1e6:.2f} M | "
                        f"{m['macs'] / 1e6:.0f} M | {m['train_images_per_second']:.0f} | {m['epochs']:.2f} | "
                        f"{m['test_accuracy']:.4f} | {r['wall_seconds_max']:.0f} | {r['commit']} |")
        parts.append("\n".join(rows))
    draw_budget_figure(by_budget)
    return "\n\n".join(parts) + f"\n\n![test accuracy against MACs per image at equal training time]({BUDGET_FIGURE})"


def draw_budget_figure(by_budget: dict[float, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (minutes, results) in enumerate(sorted(by_budget.items())):
        points = [({**r["runs"][0]["facts"], **r["runs"][0]["metrics"]}, r["experiment"].removeprefix("cifar10-"))
                  for r in results]
        ax.scatter([m["macs"] / 1e6 for m, _ in points], [m["test_accuracy"] for m, _ in points], color=f"C{k}",
                   label=f"{minutes:g} min each, {machine(results[0])}")
        for m, name in points:
            ax.annotate(name, (m["macs"] / 1e6, m["test_accuracy"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set(xscale="log", xlabel="MACs per 32×32 image (millions, log scale)", ylabel="CIFAR-10 test accuracy",
           title="Architectures at equal training time (benchmarks/run.py --budget-table)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    (ROOT / BUDGET_FIGURE).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(ROOT / BUDGET_FIGURE, dpi=110)
    plt.close(fig)


def replace_block(text: str, name: str, content: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}\n{end}{tail}"


def main() -> None:
    readme = ROOT / "README.md"
    text = replace_block(readme.read_text(), "results", table())
    text = replace_block(text, "throughput", throughput_table())
    text = replace_block(text, "budget", budget_table())
    readme.write_text(replace_block(text, "experiments", experiments_table()))
    print("README.md tables updated")


if __name__ == "__main__":
    main()
