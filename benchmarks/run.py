"""Run full-preset benchmarks and store their results as data in results/*.json.

    python benchmarks/run.py collab-bias                       # full preset, seed 0
    python benchmarks/run.py collab-bias --seeds 0 1 2
    python benchmarks/run.py mf-sgd --set split=u1 --tag mf-sgd-u1
    python benchmarks/run.py --all-quick --family recsys       # time every quick preset of a family
    python benchmarks/run.py --budget-table 10                 # every cifar10-<arch>, full preset, 10 min each

Each result file holds the `dldojo run --json` summaries plus CPU model (and its speed-relevant instruction
sets: a Zen 3 and a Zen 4 are both "AMD EPYC", but only the second has bf16), thread count, torch version
and commit. `python benchmarks/table.py` regenerates the README's results table from these files, so every
number there can be traced to a run. Benchmarks run one at a time: never two trainings at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one(name: str, preset: str, seed: int, sets: list[str], out: Path, threads: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "dldojo", "run", name, "--preset", preset, "--seed", str(seed), "--json",
           "--quiet", "--out", str(out)] + [a for s in sets for a in ("--set", s)]
    if threads:
        cmd += ["--threads", str(threads)]
    print("$", " ".join(cmd[2:]), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    full = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())
    print(f"  {summary['metrics']}  wall {summary['timings']['wall_seconds']:.1f}s  "
          f"threads {summary['facts']['threads']}", file=sys.stderr, flush=True)
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--preset", default="full")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--threads", type=int, help="torch threads (default: the experiment's own default)")
    parser.add_argument("--tag", help="result file name (default: NAME-PRESET)")
    parser.add_argument("--all-quick", action="store_true", help="run every experiment's quick preset once")
    parser.add_argument("--family", help="with --all-quick: only this family (e.g. recsys)")
    parser.add_argument("--budget-table", type=float, metavar="MINUTES",
                        help="the architecture table at equal budget: every cifar10-<arch> experiment, full preset, "
                             "time_budget_minutes=MINUTES and the same seed; results tagged NAME-budgetMINUTES "
                             "(table.py puts them in one table and an accuracy-vs-MACs picture)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="with --budget-table: only these experiments")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    args = parser.parse_args()

    from dldojo.engine import registry
    from dldojo.engine.launch import summary_value

    budget = args.budget_table
    if budget is not None and not budget > 0:
        raise SystemExit(f"--budget-table needs minutes > 0, got {budget}")
    sets = args.set + ([f"time_budget_minutes={budget:g}"] if budget else [])
    if args.all_quick:
        jobs = [(name, "quick", name + "-quick") for name, e in registry.load_all().items()
                if args.family in (None, e.family)]
    elif budget:
        names = [name for name, e in registry.load_all().items() if name.startswith("cifar10-")
                 and "time_budget_minutes" in {f.name for f in dataclasses.fields(e.config_cls)}]
        unknown = sorted(set(args.only or []) - set(names))
        if unknown:
            raise SystemExit(f"not a cifar10-<arch> experiment: {', '.join(unknown)}; one of {', '.join(names)}")
        jobs = [(name, "full", f"{name}-budget{budget:g}") for name in names if not args.only or name in args.only]
    else:
        jobs = [(name, args.preset, args.tag or f"{name}-{args.preset}") for name in args.names]
    for name, preset, tag in jobs:
        runs = [run_one(name, preset, seed, sets, Path(args.out), args.threads) for seed in args.seeds]
        experiment = registry.get(name)
        values = [summary_value(r, experiment.metric) for r in runs]
        facts = runs[0]["facts"]
        record = {
            "tag": tag, "experiment": name, "preset": preset, "sets": sets, "seeds": args.seeds,
            **({"budget_minutes": budget} if budget else {}),
            "metric": experiment.metric, "direction": experiment.direction, "target": experiment.target,
            "mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "wall_seconds_max": max(r["timings"]["wall_seconds"] for r in runs),
            "threads": facts["threads"], "cpu": facts["cpu"], "cpu_isa": facts.get("cpu_isa"),
            "cpu_family_model": facts.get("cpu_family_model"), "torch": facts["torch"],
            "commit": facts["commit"], "date": time.strftime("%Y-%m-%d"),
            "command": f"dldojo run {name} --preset {preset}" + "".join(f" --set {s}" for s in sets)
                       + (f" --threads {args.threads}" if args.threads else "")
                       + f" --seed {{{','.join(map(str, args.seeds))}}}",
            "runs": [{"seed": r["seed"], "metrics": r["metrics"], "timings": r["timings"], "facts": r["facts"]}
                     for r in runs],
            "references": runs[0]["references"],
        }
        path = ROOT / "results" / f"{tag}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
