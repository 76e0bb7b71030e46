"""Create or resume a run directory, run an experiment in it, and write its summary and report.

`summary.json` (and the `--json` line) has three sections besides the run's identity:

- `metrics`: what the seed determines (identical when the same run is repeated on the same CPU kind and
  thread count), each name prefixed by its split (`test_`, `dev_`, `eval_`, `train_`);
- `timings`: measured times and rates (`wall_seconds`, `train_seconds`, images/s, ...);
- `facts`: what describes the run without being a result (threads, machine, parameters, MACs, the epochs
  a time budget chose, sub-runs it used).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from dldojo.engine import registry
from dldojo.engine.checkpoint import remove_orphans
from dldojo.engine.config import build_config, to_jsonable
from dldojo.engine.errors import DojoError, RunInterrupted
from dldojo.engine.files import read_json, write_json
from dldojo.engine.memory import keep_freed_memory
from dldojo.engine.reload import LoadedRun, config_hash, load_run, summary_value  # noqa: F401 (re-exported)
from dldojo.engine.run import RunContext, capture_rng, machine_info, restore_rng

LOCK_FILE = ".lock"


def runs_root(out: str | Path | None = None) -> Path:
    return Path(out or os.environ.get("DLDOJO_RUNS", "runs"))


def new_run_dir(root: Path, name: str, preset: str, seed: int) -> Path:
    """Create a fresh run directory atomically (two processes started in the same second get two)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / name / f"{stamp}-{preset}-seed{seed}"
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DojoError(f"cannot create the runs folder {base.parent}: {exc.strerror or exc}. "
                        f"Choose another with --out DIR.") from None
    for k in range(1, 10_000):
        run_dir = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
        except OSError as exc:
            raise DojoError(f"cannot create a run directory in {base.parent}: {exc.strerror or exc}. "
                            f"Choose another runs folder with --out DIR.") from None
    raise DojoError(f"too many runs named {base.name} in {base.parent}")


class RunLock:
    """An exclusive lock on a run directory for the life of a run: a second process is refused at once."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fh = None

    def __enter__(self) -> RunLock:
        try:
            self._fh = open(self.path, "a+")
        except OSError as exc:
            raise DojoError(f"cannot write in {self.path.parent}: {exc.strerror or exc}.") from None
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise DojoError(f"{self.path.parent} is in use by {holder}; wait for it to finish (or stop it) "
                            f"before resuming this run.") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        self._fh.flush()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DojoError(f"{run_dir} is not a dldojo run directory (no config.json). `dldojo runs` lists runs.")
    saved = read_json(path)
    if not isinstance(saved, dict) or not {"experiment", "preset", "seed", "config"} <= set(saved):
        raise DojoError(f"{path} is damaged (fields missing); this run cannot be resumed.")
    return saved


def run_experiment(
    name: str | None = None,
    *,
    preset: str = "quick",
    sets: list[str] = (),
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    threads: int | None = None,
    quiet: bool = False,
    checkpoint_every_seconds: float = 60.0,
    checkpoint_every_steps: int | None = None,
    report: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Run (or resume) one experiment; returns the summary that is also written to summary.json.

    `overrides` (values) and `sets` (`key=value` strings) change the preset's config. Resuming a finished run
    returns its summary without training again, unless `force` (then it trains again from the start)."""
    if resume is not None:
        run_dir = Path(resume)
        saved = read_run_config(run_dir)
        if name is not None and name != saved["experiment"]:
            raise DojoError(f"{run_dir} is a run of {saved['experiment']}, not {name}.")
        if sets or overrides:
            raise DojoError("--set cannot change the config of a resumed run; start a new run instead.")
        experiment = registry.get(saved["experiment"])
        preset, seed = saved["preset"], saved["seed"]
        config = build_config(experiment.config_cls, saved["config"], experiment=experiment.name)
        if (run_dir / "summary.json").exists() and not force:
            summary = read_json(run_dir / "summary.json")
            if isinstance(summary, dict) and "metrics" in summary:
                summary["already_finished"] = True
                return summary
    else:
        if name is None:
            raise DojoError("name an experiment (see `dldojo list`) or pass --resume RUN_DIR.")
        experiment = registry.get(name)
        if preset not in registry.PRESETS:
            raise DojoError(f"unknown preset {preset!r}: choose one of {', '.join(registry.PRESETS)}.")
        config = build_config(experiment.config_cls, experiment.presets[preset], overrides or {}, sets=list(sets),
                              experiment=experiment.name)
        run_dir = None

    if threads is not None and not 1 <= threads <= 1024:
        raise DojoError(f"--threads must be between 1 and 1024, got {threads}.")
    if not 0 <= seed < 2**32:
        raise DojoError(f"--seed must be between 0 and {2**32 - 1}, got {seed}.")
    if not checkpoint_every_seconds > 0:  # also NaN; inf is allowed: only Ctrl-C / SIGTERM checkpoints
        raise DojoError(f"--checkpoint-every must be a number of seconds > 0, got {checkpoint_every_seconds:g}.")
    if checkpoint_every_steps is not None and checkpoint_every_steps < 1:
        raise DojoError(f"checkpoint_every_steps must be >= 1, got {checkpoint_every_steps}.")
    torch.set_num_threads(threads or experiment.threads or os.cpu_count() or 1)
    malloc_kept = keep_freed_memory()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    fresh = run_dir is None and int(os.environ.get("RANK", "0")) == 0
    if fresh:
        run_dir = new_run_dir(runs_root(out), experiment.name, preset, seed)
    try:
        return _run_in(run_dir, experiment, config, preset=preset, seed=seed, out=out, resume=resume, quiet=quiet,
                       checkpoint_every_seconds=checkpoint_every_seconds,
                       checkpoint_every_steps=checkpoint_every_steps, report=report, force=force,
                       malloc_kept=malloc_kept, world_size=world_size)
    except RunInterrupted:  # checkpointed (or, inside a sub-run, resumable through it): keep everything
        raise
    except Exception:
        if fresh:
            remove_if_empty(run_dir)
        raise


def remove_if_empty(run_dir: Path) -> bool:
    """Remove a new run directory that a failure left with nothing to resume or read (no checkpoint, no logged
    step: e.g. a missing dataset or a config value the data does not allow), and its experiment folder when
    that is left empty, so `dldojo runs` lists only runs that trained. Returns True when it was removed."""
    run_dir = Path(run_dir)
    if (run_dir / "checkpoints" / "last.pt").exists() or (run_dir / "metrics.jsonl").exists() \
            or (run_dir / "summary.json").exists():
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.parent.rmdir()  # only when empty
    return not run_dir.exists()


def _run_in(run_dir: Path | None, experiment: registry.Experiment, config: Any, *, preset: str, seed: int,
            out: str | Path | None, resume: str | Path | None, quiet: bool, checkpoint_every_seconds: float,
            checkpoint_every_steps: int | None, report: bool, force: bool, malloc_kept: bool,
            world_size: int) -> dict[str, Any]:
    """The run itself, in a run directory that exists (on rank 0)."""
    ctx = RunContext(run_dir or Path("."), experiment.name, preset, seed, resume=resume is not None and not force,
                     quiet=quiet, checkpoint_every_seconds=checkpoint_every_seconds,
                     checkpoint_every_steps=checkpoint_every_steps, runs_root=runs_root(out) if resume is None else None,
                     subrun=require_run)
    ctx.setup_distributed()
    run_dir = _agree_on_run_dir(ctx, run_dir)
    with RunLock(run_dir) if ctx.is_main else contextlib.nullcontext():
        if ctx.is_main:
            remove_orphans(run_dir)
        if ctx.is_main and resume is not None and force:  # train again from the start: nothing old may remain
            for name_ in ("summary.json", "metrics.jsonl", "decisions.json", "report.html", "checkpoints/last.pt"):
                (run_dir / name_).unlink(missing_ok=True)
        if ctx.is_main and (resume is None or force):
            write_json(run_dir / "config.json", {"experiment": experiment.name, "preset": preset, "seed": seed,
                                                 "config": to_jsonable(config),
                                                 "config_hash": config_hash(experiment.name, config)})
        with ctx.interrupt_guard():
            metrics = experiment.run(ctx, config)
        summary = {
            "experiment": experiment.name,
            "preset": preset,
            "seed": seed,
            "run_dir": str(run_dir),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "timings": {"wall_seconds": round(ctx.wall_seconds, 2), **ctx.timings},
            "facts": {"threads": torch.get_num_threads(), "world_size": world_size,
                      "malloc_keeps_freed_memory": malloc_kept, **machine_info(), **ctx.facts},
            "primary_metric": experiment.metric,
            "direction": experiment.direction,
            "target": experiment.target,
            "references": [{"metric": r.metric or experiment.metric, "value": r.value, "source": r.source,
                            "note": r.note} for r in experiment.references],
            "config": to_jsonable(config),
            "config_hash": config_hash(experiment.name, config),
        }
        if ctx.is_main:
            write_json(run_dir / "summary.json", summary)
            if report:
                from dldojo.engine.report import build_report

                build_report(run_dir)
    return summary


def _agree_on_run_dir(ctx: RunContext, run_dir: Path | None) -> Path:
    """Under torchrun every rank must write into rank 0's run directory."""
    if ctx.world_size == 1:
        return run_dir
    import torch.distributed as dist

    holder = [str(run_dir)]
    dist.broadcast_object_list(holder, src=0)
    ctx.run_dir = Path(holder[0])
    ctx.runs_root = ctx.run_dir.parent.parent
    return ctx.run_dir


def find_run(root: Path, experiment: str, config_hash_: str, seed: int) -> tuple[Path | None, Path | None]:
    """(newest finished, newest resumable) run of `experiment` under `root` with this config hash and seed."""
    finished = resumable = None
    for config_path in sorted(Path(root).glob(f"{experiment}/*/config.json")):
        try:
            saved = read_run_config(config_path.parent)
            same = (saved["seed"] == seed and
                    saved.get("config_hash", config_hash(experiment, saved["config"])) == config_hash_)
        except DojoError:
            continue
        if not same:
            continue
        if (config_path.parent / "summary.json").exists():
            finished = config_path.parent
        elif (config_path.parent / "checkpoints" / "last.pt").exists():
            resumable = config_path.parent
    return finished, resumable


def require_run(ctx: RunContext, experiment: str, *, preset: str, seed: int,
                overrides: dict[str, Any]) -> LoadedRun:
    """`RunContext.requires`: find, resume or run a sub-run under ctx's runs root, then load it."""
    exp = registry.get(experiment)
    config = build_config(exp.config_cls, exp.presets[preset], overrides, experiment=experiment)
    finished, resumable = find_run(ctx.runs_root, experiment, config_hash(experiment, config), seed)
    if finished is None:
        rng_state = capture_rng()  # the sub-run seeds the global generators; the caller's draws must not move
        threads = torch.get_num_threads()
        what = f"resuming {resumable}" if resumable else f"running it first under {ctx.runs_root}"
        if ctx.is_main and not ctx.quiet:
            print(f"[dldojo] {ctx.experiment} needs a finished {experiment} run ({preset}, seed {seed}): {what}",
                  flush=True)
        try:
            summary = run_experiment(experiment, preset=preset, overrides=overrides if resumable is None else None,
                                     seed=seed, out=ctx.runs_root, resume=resumable, threads=threads,
                                     quiet=ctx.quiet, checkpoint_every_seconds=ctx.checkpoint_every_seconds,
                                     checkpoint_every_steps=ctx.checkpoint_every_steps)
        except DojoError as exc:
            if type(exc).__name__ == "RunInterrupted":
                raise type(exc)(f"interrupted during the {experiment} sub-run (checkpoint saved). Continue with: "
                                f"dldojo run --resume {ctx.run_dir}") from None
            raise
        finally:
            torch.set_num_threads(threads)
            restore_rng(rng_state)
        finished = Path(summary["run_dir"])
    return load_run(finished)


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Every run under `root` with its state; a run with damaged files is listed as broken, never fatal."""
    rows = []
    for config_path in sorted(Path(root).glob("*/*/config.json")):
        run_dir = config_path.parent
        row = {"run_dir": str(run_dir), "experiment": run_dir.parent.name, "preset": "?", "seed": "?",
               "state": "broken", "metrics": {}, "wall_seconds": None, "primary_metric": None, "primary_value": None}
        try:
            config = read_run_config(run_dir)
            row.update(experiment=config["experiment"], preset=config["preset"], seed=config["seed"])
            summary_path = run_dir / "summary.json"
            if summary_path.exists():
                summary = read_json(summary_path)
                primary = summary.get("primary_metric")
                row.update(state="finished", metrics=summary["metrics"],
                           wall_seconds=summary.get("timings", summary).get("wall_seconds"), primary_metric=primary,
                           primary_value=summary_value(summary, primary) if primary else None)
            else:
                row["state"] = "checkpointed" if (run_dir / "checkpoints" / "last.pt").exists() else "incomplete"
        except (DojoError, KeyError, TypeError, AttributeError) as exc:
            reason = str(exc).splitlines()[0].replace(f"{run_dir}{os.sep}", "")  # the run is in the first column
            row["state"] = f"broken ({reason[:80]})"
        rows.append(row)
    return rows
