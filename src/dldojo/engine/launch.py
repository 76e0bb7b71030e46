"""Create or resume a run directory, run an experiment in it, and write its summary and report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from dldojo.engine import registry
from dldojo.engine.config import build_config, to_jsonable
from dldojo.engine.errors import DojoError
from dldojo.engine.memory import keep_freed_memory
from dldojo.engine.run import RunContext, machine_info


def runs_root(out: str | Path | None = None) -> Path:
    return Path(out or os.environ.get("DLDOJO_RUNS", "runs"))


def new_run_dir(root: Path, name: str, preset: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / name / f"{stamp}-{preset}-seed{seed}"
    run_dir, k = base, 1
    while run_dir.exists():
        k += 1
        run_dir = base.with_name(f"{base.name}-{k}")
    return run_dir


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise DojoError(f"{run_dir} is not a dldojo run directory (no config.json). `dldojo runs` lists runs.")
    return json.loads(path.read_text())


def run_experiment(
    name: str | None = None,
    *,
    preset: str = "quick",
    sets: list[str] = (),
    seed: int = 0,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    threads: int | None = None,
    quiet: bool = False,
    checkpoint_every_seconds: float = 60.0,
    checkpoint_every_steps: int | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Run (or resume) one experiment; returns the summary that is also written to summary.json."""
    if resume is not None:
        run_dir = Path(resume)
        saved = read_run_config(run_dir)
        if name is not None and name != saved["experiment"]:
            raise DojoError(f"{run_dir} is a run of {saved['experiment']}, not {name}.")
        if sets:
            raise DojoError("--set cannot change the config of a resumed run; start a new run instead.")
        experiment = registry.get(saved["experiment"])
        preset, seed = saved["preset"], saved["seed"]
        config = build_config(experiment.config_cls, saved["config"], experiment=experiment.name)
    else:
        if name is None:
            raise DojoError("name an experiment (see `dldojo list`) or pass --resume RUN_DIR.")
        experiment = registry.get(name)
        if preset not in registry.PRESETS:
            raise DojoError(f"unknown preset {preset!r}: choose one of {', '.join(registry.PRESETS)}.")
        config = build_config(experiment.config_cls, experiment.presets[preset], sets=list(sets),
                              experiment=experiment.name)
        run_dir = new_run_dir(runs_root(out), experiment.name, preset, seed)

    torch.set_num_threads(threads or experiment.threads or os.cpu_count() or 1)
    malloc_kept = keep_freed_memory()
    ctx = RunContext(run_dir, experiment.name, preset, seed, resume=resume is not None, quiet=quiet,
                     checkpoint_every_seconds=checkpoint_every_seconds,
                     checkpoint_every_steps=checkpoint_every_steps)
    ctx.setup_distributed()
    run_dir = _agree_on_run_dir(ctx, run_dir)
    if ctx.is_main and resume is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(
            {"experiment": experiment.name, "preset": preset, "seed": seed, "config": to_jsonable(config)},
            indent=1))
    with ctx.interrupt_guard():
        metrics = experiment.run(ctx, config)
    summary = {
        "experiment": experiment.name,
        "preset": preset,
        "seed": seed,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "wall_seconds": round(ctx.wall_seconds, 2),
        "threads": torch.get_num_threads(),
        "malloc_keeps_freed_memory": malloc_kept,
        "run_dir": str(run_dir),
        "primary_metric": experiment.metric,
        "direction": experiment.direction,
        "target": experiment.target,
        "references": [{"metric": r.metric or experiment.metric, "value": r.value, "source": r.source,
                        "note": r.note} for r in experiment.references],
        "config": to_jsonable(config),
        "world_size": ctx.world_size,
        **machine_info(),
    }
    if ctx.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        if report:
            from dldojo.engine.report import build_report

            build_report(run_dir)
    return summary


def _agree_on_run_dir(ctx: RunContext, run_dir: Path) -> Path:
    """Under torchrun every rank must write into rank 0's run directory."""
    if ctx.world_size == 1:
        return run_dir
    import torch.distributed as dist

    holder = [str(run_dir)]
    dist.broadcast_object_list(holder, src=0)
    ctx.run_dir = Path(holder[0])
    return ctx.run_dir


def list_runs(root: Path) -> list[dict[str, Any]]:
    rows = []
    for config_path in sorted(Path(root).glob("*/*/config.json")):
        run_dir = config_path.parent
        config = json.loads(config_path.read_text())
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        state = "finished" if summary else ("checkpointed" if (run_dir / "checkpoints" / "last.pt").exists()
                                            else "incomplete")
        rows.append({"run_dir": str(run_dir), "experiment": config["experiment"], "preset": config["preset"],
                     "seed": config["seed"], "state": state,
                     "metrics": summary["metrics"] if summary else {},
                     "wall_seconds": summary["wall_seconds"] if summary else None})
    return rows
