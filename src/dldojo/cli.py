"""The `dldojo` command line: list, show, run, runs, report, data, recommend."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import textwrap
from pathlib import Path

from dldojo.engine.console import SafeStream, format_table, terminal_width
from dldojo.engine.errors import DojoError, NonFiniteLoss, RunInterrupted


EPILOG = """examples:
  dldojo list                                   what can be run
  dldojo show collab-bias                       config keys, presets, references
  dldojo run collab-bias --preset full          train + evaluate + report
  dldojo run mf-sgd --set n_factors=20 --set split=u1 --seed 3
  dldojo run --resume runs/collab-bias/20260101-120000-full-seed0
  dldojo recommend runs/collab-bias/<run> --user 42
  dldojo data verify ml-100k

data: datasets are looked up in $DLDOJO_DATA (':'-separated roots), then ~/.cache/dldojo;
      missing ones are downloaded from their official URL when online.
"""


def cmd_list(args) -> int:
    from dldojo.engine import registry

    rows = []
    for exp in registry.load_all().values():
        if args.family and exp.family != args.family:
            continue
        refs = "; ".join(f"{r.metric or exp.metric} {r.value:g} ({r.source.split(',')[0]})" for r in exp.references)
        target = f"{'<=' if exp.direction == 'min' else '>='} {exp.target:g}" if exp.target is not None else ""
        where = ",".join(exp.datasets) or exp.environment
        rows.append([exp.name, exp.topic, where, f"{exp.metric} ({exp.direction})", target, refs])
    print(format_table(rows, ["name", "topic", "dataset", "metric", "target", "references"],
                       max_width=_table_width(args), shrink=(1, 5, 2, 3)))
    return 0


def _table_width(args) -> int | None:
    """The width a table must fit: the terminal's, or no limit with --wide (and when stdout is not a terminal)."""
    return None if getattr(args, "wide", False) else terminal_width()


def cmd_show(args) -> int:
    from dldojo.engine import registry
    from dldojo.engine.config import describe_fields
    from dldojo.engine.lang import better, metric_name, text

    exp, lang = registry.get(args.name), args.lang

    def named(metric: str) -> str:  # テスト精度 (test_accuracy) in Japanese, the identifier in English
        label = metric_name(metric, lang)
        return metric if label == metric else f"{label} ({metric})"

    print(f"{exp.name}: {exp.topic}\n{text('source:', lang)} {exp.paper}\n"
          + (f"{text('datasets:', lang)} {', '.join(exp.datasets)}" if exp.datasets
             else f"{text('environment:', lang)} {exp.environment}"))
    print(f"{text('metric:', lang)} {named(exp.metric)} ({better(exp.direction, lang)})"
          + (f", {text('target', lang)} {exp.target:g} {text('with --preset full', lang)}" if exp.target is not None
             else ""))
    for ref in exp.references:
        print(f"{text('reference:', lang)} {named(ref.metric or exp.metric)} = {ref.value:g} — {ref.source} {ref.note}")
    if lang == "ja" and exp.family:
        print(f"{text('Japanese guide:', lang)} docs/ja/{exp.family}.md")
    print(f"\n{text('config keys (--set key=value):', lang)}")
    print(describe_fields(exp.config_cls))
    print(f"\n{text('presets:', lang)}")
    for name, overrides in exp.presets.items():
        print(f"  {name}: {', '.join(f'{k}={v}' for k, v in overrides.items()) or text('(defaults)', lang)}")
    return 0


def cmd_run(args) -> int:
    from dldojo.engine.launch import run_experiment, summary_value

    summary = run_experiment(args.name, preset=args.preset, sets=args.set or [], seed=args.seed, out=args.out,
                             resume=args.resume, threads=args.threads, quiet=args.quiet,
                             checkpoint_every_seconds=args.checkpoint_every, report=not args.no_report,
                             force=args.force)
    keys = ("experiment", "preset", "seed", "metrics", "timings", "facts", "run_dir")
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    if summary.get("already_finished"):
        print(f"{summary['run_dir']} has already finished; nothing to resume (--force trains it again from the "
              f"start).", file=sys.stderr)
    if args.json:
        print(json.dumps({k: summary[k] for k in keys}))
    else:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in summary["metrics"].items())
        print(f"{summary['experiment']} [{summary['preset']}, seed {summary['seed']}]: {metrics}")
        primary, target = summary["primary_metric"], summary["target"]
        for ref in summary["references"]:
            print(f"  reference {ref['metric']} {ref['value']:g}: {ref['source']}")
        value = summary_value(summary, primary)
        if target is not None and value is not None:
            met = value <= target if summary["direction"] == "min" else value >= target
            print(f"  target {primary} {'<=' if summary['direction'] == 'min' else '>='} {target:g} "
                  f"(full preset): {'met' if met else 'missed'}")
        threads = summary["facts"]["threads"]
        print(f"  wall {summary['timings']['wall_seconds']:.1f} s, {threads} thread{'' if threads == 1 else 's'}; "
              f"report: {summary['run_dir']}/report.html")
    return 0


def cmd_runs(args) -> int:
    from dldojo.engine.launch import list_runs, runs_root

    root, name, only = _runs_selection(args)
    rows = []
    for r in list_runs(root):
        if (name and r["experiment"] != name) or (only and Path(r["run_dir"]) != only):
            continue
        wall = f"{r['wall_seconds']:.1f}s" if r["wall_seconds"] is not None else ""
        if args.wide:
            shown = r["metrics"]
        else:  # the experiment's primary metric (`dldojo show` says which); --wide shows every one
            primary = r.get("primary_metric")
            shown = {primary: r["primary_value"]} if primary and r.get("primary_value") is not None else {}
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in shown.items())
        rows.append([r["run_dir"], r["experiment"], r["preset"], str(r["seed"]), r["state"], wall, metrics])
    if not rows:
        what = f" of {name}" if name else ""
        print(f"no runs{what} under {root}")
        return 0
    print(format_table(rows, ["run_dir", "experiment", "preset", "seed", "state", "wall",
                              "metrics" if args.wide else "metric"], max_width=_table_width(args),
                       shrink=(0, 4, 6, 1)))
    return 0


def _runs_selection(args) -> tuple[Path, str | None, Path | None]:
    """(runs root, experiment name or None, one run directory or None) for `dldojo runs [NAME | PATH]`.

    An existing folder is read as a path: a runs root, one experiment's folder inside it, or a single run."""
    from dldojo.engine import registry
    from dldojo.engine.launch import runs_root

    root = runs_root(args.out)
    if not args.name:
        return root, None, None
    path = Path(args.name)
    if path.is_dir():
        if (path / "config.json").is_file():  # a run directory
            return path.parent.parent, None, path
        if any(path.glob("*/config.json")):  # an experiment's folder: runs/<experiment>
            return path.parent, path.name, None
        return path, None, None
    if args.name in registry.load_all() or (root / args.name).is_dir():
        return root, args.name, None
    if os.sep in args.name or args.name.startswith("."):
        raise DojoError(f"{args.name} does not exist; give a runs folder (`dldojo runs PATH`) or an experiment "
                        f"name (`dldojo list`).")
    registry.get(args.name)  # raises the did-you-mean error naming the known experiments
    return root, args.name, None


def cmd_report(args) -> int:
    from dldojo.engine.report import build_report

    print(build_report(Path(args.run_dir), lang=args.lang))
    return 0


def cmd_data(args) -> int:
    from dldojo.data import store

    if args.action == "list":
        rows = []
        for ds in store.all_datasets().values():
            st = store.status(ds.name)
            rows.append([ds.name, st.state, str(st.path or ""), ds.description, ds.license])
        print(format_table(rows, ["name", "status", "location", "what", "license"], max_width=_table_width(args),
                           shrink=(3, 4), shrink_last=(2,)))  # a location is for copying: cut last
        return 0
    if args.action == "verify" and not args.name:
        return _verify_all(store)
    if not args.name:
        raise DojoError(f"`dldojo data {args.action}` needs a dataset name (see `dldojo data list`).")
    if args.action == "where":
        st = store.status(args.name)
        if st.path is None:
            print("not found; searched:\n" + "\n".join(f"  {p}" for p in st.searched))
            return 1
        print(st.path)
        return 0
    # verify: full check, download if missing and allowed
    st = store.status(args.name)
    if st.state not in ("ok", "fixture"):
        store.locate(args.name, download=not args.no_download)  # downloads, or raises what is wrong and what to do
        st = store.status(args.name)
    print(_verified(st))
    return 0


FIXTURE_NOTE = (" (a synthetic test fixture, vouched for only by its own FIXTURE.json: accepted because "
                "DLDOJO_ALLOW_FIXTURES=1 is set; unset it for any data you did not make)")


def _verified(st) -> str:
    from dldojo.data import store

    return (f"{st.dataset}: {st.state} at {st.path} — {store.what_was_checked(st)}"
            + (FIXTURE_NOTE if st.state == "fixture" else ""))


def _verify_all(store) -> int:
    """`dldojo data verify` without a name: every registered dataset found on disk (nothing is downloaded)."""
    failed = 0
    for name in store.all_datasets():
        st = store.status(name)
        if st.state in ("ok", "fixture"):
            print(_verified(st))
        elif st.state == "missing":
            print(f"{name}: missing (not downloaded here; `dldojo data verify {name}` fetches it or says how)")
        else:
            failed += 1
            print(f"{name}: {st.state} at {st.path}: {st.detail}")
    if failed:
        print(f"{store.plural(failed, 'dataset')} failed verification: delete or replace "
              f"{'it' if failed == 1 else 'them'} and run `dldojo data verify NAME`.", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dldojo", description="The deep-learning curriculum as real, runnable, tested experiments.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="table of experiments with topic, dataset, metric and references")
    p.add_argument("--family", help="only this family (e.g. recsys)")
    p.add_argument("--wide", action="store_true", help="do not shorten cells to fit the terminal")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="an experiment's config keys, presets and references")
    p.add_argument("name")
    p.add_argument("--lang", choices=["en", "ja"], default="en", help="language of the headings and metric names "
                   "(default: en; ja: Japanese, config docs stay English)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "run", help="train and evaluate an experiment, writing a run directory and report",
        description="Train and evaluate NAME. Progress (loss, metric, ETA) goes to stderr; the run directory "
                    "holds config.json, metrics.jsonl, checkpoints/, summary.json and report.html. Ctrl-C saves a "
                    "checkpoint; continue with --resume RUN_DIR.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets: smoke = seconds (tests), quick = <= ~2 min, meaningful; full = the benchmark setting.\n"
               "`dldojo show NAME` lists the config keys accepted by --set.")
    p.add_argument("name", nargs="?", help="experiment name (see `dldojo list`); optional with --resume")
    p.add_argument("--preset", default="quick", choices=["smoke", "quick", "full"], help="default: quick")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed (default 0): the same seed gives the same metrics on the same CPU kind with "
                        "the same --threads")
    p.add_argument("--out", help="runs root (default: $DLDOJO_RUNS or ./runs)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON summary object as the last stdout line")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="periodic checkpoint interval, > 0 (default 60 s); Ctrl-C always checkpoints")
    p.add_argument("--no-report", action="store_true", help="skip writing report.html")
    p.add_argument("--force", action="store_true",
                   help="with --resume of a finished run: train it again from the start (default: do nothing)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="past runs with their state and metrics")
    p.add_argument("name", nargs="?", metavar="NAME|PATH",
                   help="only runs of this experiment, or the runs under this folder (a runs root, an experiment's "
                        "folder, or one run directory)")
    p.add_argument("--out", help="runs root (default: $DLDOJO_RUNS or ./runs)")
    p.add_argument("--wide", action="store_true",
                   help="every metric of each run, and cells not shortened to fit the terminal")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("report", help="(re)build RUN_DIR/report.html: curves, metrics vs references, pictures")
    p.add_argument("run_dir")
    p.add_argument("--lang", choices=["en", "ja"], default="en",
                   help="language of the report's headings, metric names and comparison (default: en)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("data", help="datasets: list | verify [NAME] | where NAME",
                       description="list: every registered dataset and its status; verify NAME: check its sha256 "
                                   "(downloading it first if missing and online); verify: check every dataset on "
                                   "disk (nothing is downloaded); where NAME: print its folder.")
    p.add_argument("action", choices=["list", "verify", "where"])
    p.add_argument("name", nargs="?")
    p.add_argument("--no-download", action="store_true", help="verify only what is already on disk")
    p.add_argument("--wide", action="store_true", help="list: do not shorten cells to fit the terminal")
    p.set_defaults(func=cmd_data)

    from dldojo.engine.family import families

    for family in families():  # family-specific commands (recommend, translate, play, explain, ...)
        if family.commands:
            importlib.import_module(family.commands).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A reader that goes away (`dldojo list | head`, a closed `tee`) silences the output
    instead of failing the command: a training run goes on and saves its checkpoint."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(sys.stdout), SafeStream(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = saved


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except RunInterrupted as exc:
        print(f"\n[dldojo] {exc}", file=sys.stderr)
        return 130
    except NonFiniteLoss as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except DojoError as exc:
        print("error: " + textwrap.indent(str(exc), "  ").lstrip(), file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file the code expected to read or write (a hand-made data folder, a full disk)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; check that path (does it exist, can this user read and write "
              f"it, is the disk full?)", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # torch reports a failed allocation as a RuntimeError
        if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
            raise
        print("error: out of memory: lower the sizes in the config (`dldojo show <experiment>` lists them with "
              "their ranges) or the batch size, or close other programs", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: the checkpoint of the first one (if any) is on disk
        print("\n[dldojo] aborted", file=sys.stderr)
        return 130
