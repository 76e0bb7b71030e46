"""The Python API (for notebooks and scripts): the CLI's commands as functions that return objects.

    import dldojo
    dldojo.experiments()                                  # every experiment (an HTML table in Jupyter)
    dldojo.show("mf-sgd")                                 # description, config fields, presets, references
    r = dldojo.run("mf-sgd", preset="smoke", n_factors=30, alpha=0.004)   # keywords = the CLI's --set
    r.metrics, r.history, r.figures, r.report_path        # results; `r` alone renders metrics and figures
    r.recommend(user=42)                                  # the family's actions: its commands, in Python
    dldojo.load(r.run_dir); dldojo.runs("mf-sgd")         # a finished run again; past runs

Everything is checked exactly as on the command line (the same code builds and validates the config) and a
mistake raises `DojoError` with the CLI's message; inside IPython / Jupyter it shows as that message alone,
without a traceback. `run` leaves the caller's torch thread count, global random states (`random`, NumPy,
torch) and, in IPython, the matplotlib backend as they were. Nothing here names a family: actions are what each family
declares (`engine.family.Family.actions`). Importing this module imports neither torch nor matplotlib.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import html
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dldojo.engine.display import Table, fmt, image_html, table_html
from dldojo.engine.errors import DojoError, did_you_mean

__all__ = ["DojoError", "History", "Result", "experiments", "load", "resume", "run", "runs", "show"]

RUN_PARAMETERS = ("name", "preset", "seed", "threads", "out", "quiet")
"""The parameters of `run` besides the config overrides (no config field may be called like one)."""
SHOWN_FIGURES = 3
"""Run figures embedded by `Result`'s HTML view (after the training curves); the rest are listed by name."""


class UnknownAction(DojoError, AttributeError):
    """An action this run's family does not declare (also an AttributeError, so `hasattr` stays False)."""


# ============================================================================ caller state


@contextlib.contextmanager
def _matplotlib_backend_kept() -> Iterator[None]:
    """In IPython / Jupyter, keep the user's matplotlib backend: experiments and reports select Agg
    (`matplotlib.use("Agg")`), which would otherwise silence the notebook's inline figures afterwards.
    Outside IPython nothing is done (as on the command line, runs leave Agg selected)."""
    if _ipython_shell() is None:
        yield
        return
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    custom = before.startswith("module://")
    module = before[len("module://"):] if custom else f"matplotlib.backends.backend_{before.lower()}"
    if module not in sys.modules:
        # Load the backend now: its IPython hooks (e.g. inline figures) are set up only if it is loaded while
        # selected, and restoring it after a run would load it while Agg is still selected. No figure can
        # exist yet (making one loads the backend), so switching closes nothing.
        plt.switch_backend(before)
    try:
        yield
    finally:
        if matplotlib.get_backend().lower() != before.lower():
            plt.switch_backend(before)


@contextlib.contextmanager
def _caller_state_kept() -> Iterator[None]:
    """Restore torch's thread count, the global RNGs of random / NumPy / torch and (in IPython) the matplotlib
    backend."""
    import random

    import numpy as np
    import torch

    threads = torch.get_num_threads()
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        with _matplotlib_backend_kept():
            yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)


# ============================================================================ experiments


def _reference_text(ref: dict[str, Any]) -> str:
    return f"{ref['metric']} {ref['value']:g} — {ref['source']}"


def _references(exp: Any) -> list[dict[str, Any]]:
    return [{"metric": r.metric or exp.metric, "value": r.value, "source": r.source, "note": r.note}
            for r in exp.references]


def experiments(family: str | None = None) -> Table:
    """Every experiment (or those of one family) as a list of dicts: name, family, topic, datasets (or the
    environment), metric, direction, target (full preset) and references; an HTML table in Jupyter."""
    from dldojo.engine import registry
    from dldojo.engine.family import families

    known = [f.name for f in families()]
    if family is not None and family not in known:
        raise DojoError(f"unknown family {family!r}.{did_you_mean(family, known)} Families: {', '.join(known)}.")
    rows = [{"name": exp.name, "family": exp.family, "topic": exp.topic,
             "datasets": list(exp.datasets) or [exp.environment], "metric": exp.metric, "direction": exp.direction,
             "target": exp.target, "references": _references(exp)}
            for exp in registry.load_all().values() if family is None or exp.family == family]
    return _ExperimentTable(rows)


class _ExperimentTable(Table):
    """Datasets and references shown as short text (the rows keep their lists and dicts)."""

    def _shown(self) -> Table:
        return Table({**row, "datasets": ", ".join(row["datasets"]),
                      "references": "; ".join(_reference_text(r) for r in row["references"])} for row in self)

    def __repr__(self) -> str:
        return repr(self._shown())

    def _repr_html_(self) -> str:
        return self._shown()._repr_html_()


@dataclasses.dataclass(frozen=True)
class ExperimentInfo:
    """What `dldojo show NAME` prints, as data: `config` lists each field (name, type, default, range, doc)."""

    name: str
    family: str
    topic: str
    paper: str
    datasets: tuple[str, ...]
    environment: str
    metric: str
    direction: str
    target: float | None
    references: list[dict[str, Any]]
    config: list[dict[str, Any]]
    presets: dict[str, dict[str, Any]]
    actions: tuple[str, ...]

    def __repr__(self) -> str:
        lines = [f"{self.name}: {self.topic}", f"source: {self.paper}",
                 f"datasets: {', '.join(self.datasets)}" if self.datasets else f"environment: {self.environment}",
                 f"metric: {self.metric} ({'lower' if self.direction == 'min' else 'higher'} is better)"
                 + (f", target {self.target:g} with preset='full'" if self.target is not None else "")]
        lines += [f"reference: {r['metric']} = {r['value']:g} — {r['source']} {r['note']}".rstrip()
                  for r in self.references]
        if self.actions:
            lines.append(f"actions on a finished run: {', '.join(f'r.{a}(...)' for a in self.actions)}")
        lines.append("\nconfig (keyword arguments of dldojo.run):")
        for f in self.config:
            bounds = f", {f['range']}" if f["range"] else ""
            lines.append(f"  {f['name']} ({f['type']}, default {f['default']!r}{bounds}): {f['doc']}")
        lines.append("\npresets:")
        lines += [f"  {name}: {', '.join(f'{k}={v}' for k, v in values.items()) or '(defaults)'}"
                  for name, values in self.presets.items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        where = (f"<b>datasets:</b> {html.escape(', '.join(self.datasets))}" if self.datasets
                 else f"<b>environment:</b> {html.escape(self.environment)}")
        target = f", target {self.target:g} with preset='full'" if self.target is not None else ""
        better = "lower" if self.direction == "min" else "higher"
        parts = [f"<h3>{html.escape(self.name)}</h3><p>{html.escape(self.topic)}<br><b>source:</b> "
                 f"{html.escape(self.paper)}<br>{where}<br><b>metric:</b> {html.escape(self.metric)} "
                 f"({better} is better){html.escape(target)}"
                 + (f"<br><b>actions:</b> {html.escape(', '.join(self.actions))}" if self.actions else "") + "</p>"]
        if self.references:
            parts.append("<b>references</b>" + table_html(self.references))
        parts.append("<b>config</b> (keyword arguments of <code>dldojo.run</code>)"
                     + table_html([{**f, "default": fmt(f["default"])} for f in self.config]))
        parts.append("<b>presets</b>" + table_html(
            [{"preset": name, "overrides": ", ".join(f"{k}={v}" for k, v in values.items()) or "(defaults)"}
             for name, values in self.presets.items()]))
        return "".join(parts)


def show(name: str) -> ExperimentInfo:
    """An experiment's description, config fields (type, default, allowed range, doc), presets, references
    and the actions its finished runs offer."""
    from typing import get_args, get_origin

    from dldojo.engine import registry
    from dldojo.engine.config import field_docs, field_range, field_types, type_name

    exp = registry.get(name)
    docs, types = field_docs(exp.config_cls), field_types(exp.config_cls)
    fields = []
    for f in dataclasses.fields(exp.config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        tp = types[f.name]
        inner = get_args(tp)[0] if get_origin(tp) is tuple and get_args(tp) else tp
        bounds = ""
        if inner in (int, float):
            low, high = field_range(exp.config_cls, f.name)
            bounds = f"{fmt(float(low))}..{fmt(float(high))}" if high is not None else f">= {fmt(float(low))}"
        fields.append({"name": f.name, "type": type_name(tp), "default": default, "range": bounds,
                       "doc": docs.get(f.name, "")})
    return ExperimentInfo(exp.name, exp.family, exp.topic, exp.paper, tuple(exp.datasets), exp.environment,
                          exp.metric, exp.direction, exp.target, _references(exp), fields,
                          {k: dict(v) for k, v in exp.presets.items()}, tuple(_family_actions(exp.family)))


# ============================================================================ running and loading


def _as_set(key: str, value: Any) -> str:
    """A keyword override as the CLI's `--set key=value` text, so it is parsed and checked the same way."""
    if isinstance(value, tuple | list):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, float):
        text = repr(value)  # round-trips exactly
    else:
        text = str(value)
    return f"{key}={text}"


def _check_int(value: Any, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise DojoError(f"{what} must be an integer, got {value!r}.")


def run(name: str, *, preset: str = "quick", seed: int = 0, threads: int | None = None,
        out: str | Path | None = None, quiet: bool = False, **overrides: Any) -> Result:
    """Train and evaluate experiment `name` (like `dldojo run`) and return its `Result`.

    `overrides` are config fields as keyword arguments (`lr=0.01, n_factors=30`), checked exactly as the
    CLI's `--set key=value` (`dldojo.show(name)` lists them); `out` is the runs root (default $DLDOJO_RUNS or
    ./runs); `quiet` hides the progress bar (a widget in Jupyter). The caller's torch thread count, global
    random states and (in IPython) matplotlib backend are restored afterwards. Interrupting the kernel stops
    the run after a checkpoint (`dldojo.resume(run_dir)` continues it)."""
    from dldojo.engine.launch import run_experiment

    _check_int(seed, "seed")
    _check_int(threads, "threads")
    sets = [_as_set(key, value) for key, value in overrides.items()]
    with _caller_state_kept():
        summary = run_experiment(name, preset=preset, sets=sets, seed=seed, out=out, threads=threads, quiet=quiet)
    return load(summary["run_dir"])


def resume(run_dir: str | Path, *, threads: int | None = None, quiet: bool = False) -> Result:
    """Continue an interrupted run from its last checkpoint (a finished run is loaded as it is)."""
    from dldojo.engine.launch import run_experiment

    _check_int(threads, "threads")
    with _caller_state_kept():
        summary = run_experiment(resume=run_dir, threads=threads, quiet=quiet)
    return load(summary["run_dir"])


def load(run_dir: str | Path) -> Result:
    """The `Result` of a finished run directory (`dldojo.runs()` lists them)."""
    from dldojo.engine.reload import load_run

    return Result(load_run(run_dir))


def runs(name: str | None = None, *, out: str | Path | None = None) -> Table:
    """Past runs under the runs root (`out`, default $DLDOJO_RUNS or ./runs), of one experiment if `name` is
    given: dicts with run_dir, experiment, preset, seed, state, metrics, wall_seconds."""
    from dldojo.engine import registry
    from dldojo.engine.launch import list_runs, runs_root

    root = runs_root(out)
    if name is not None and name not in registry.load_all() and not (root / name).is_dir():
        registry.get(name)  # the did-you-mean error
    return _RunTable(r for r in list_runs(root) if name is None or r["experiment"] == name)


class _RunTable(Table):
    def _shown(self) -> Table:
        return Table({**row, "metrics": ", ".join(f"{k}={fmt(v)}" for k, v in row["metrics"].items())}
                     for row in self)

    def __repr__(self) -> str:
        return repr(self._shown())

    def _repr_html_(self) -> str:
        return self._shown()._repr_html_()


# ============================================================================ results


class History(dict):
    """A run's logged curves (metrics.jsonl) as columns: name -> list with one entry per logged record
    (None where a record lacks that name, e.g. an evaluation logged every few steps)."""

    def __init__(self, records: list[dict[str, Any]]):
        columns = list(dict.fromkeys(k for r in records for k in r))
        super().__init__({k: [r.get(k) for r in records] for k in columns})
        self.records = records

    def series(self, key: str, x: str = "step") -> tuple[list, list]:
        """(x values, values) of the records that logged `key`."""
        if key not in self:
            raise DojoError(f"no logged series {key!r}.{did_you_mean(key, self)} Logged: {', '.join(self)}.")
        pairs = [(r.get(x), r[key]) for r in self.records if r.get(key) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def plot(self, *keys: str, x: str = "step", ax: Any = None) -> Any:
        """Plot logged series against `x` (default: every series with 'loss' in its name, else all numeric
        ones) on one matplotlib Axes, which it returns."""
        import matplotlib.pyplot as plt

        numeric = [k for k, v in self.items() if k not in ("step", "wall", "epoch")
                   and any(isinstance(e, int | float) and not isinstance(e, bool) for e in v)]
        keys = keys or tuple(k for k in numeric if "loss" in k) or tuple(numeric)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        for key in keys:
            xs, ys = self.series(key, x)
            ax.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, ms=3)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend()
        return ax


class Html:
    """HTML that Jupyter renders (e.g. `r.html(lang="ja")`); `str()` gives the markup."""

    def __init__(self, markup: str, title: str = ""):
        self.markup, self.title = markup, title

    def __str__(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        what = f" of {self.title}" if self.title else ""
        return f"<HTML view{what}: {len(self.markup):,} characters; str() gives them>"

    def _repr_html_(self) -> str:
        return self.markup


def _family_actions(family_name: str) -> dict[str, str]:
    from dldojo.engine.family import families

    return next((dict(f.actions) for f in families() if f.name == family_name), {})


class Result:
    """A finished run: `metrics`, `timings`, `facts`, `config`, `history`, `figures`, `report_path`, `run_dir`,
    `model`, and its family's actions as methods (e.g. `r.recommend(user=42)`; `r.actions` lists them).
    Renders in Jupyter as the metrics next to the reference numbers with the main figures."""

    def __init__(self, loaded: Any):
        self.loaded = loaded
        """The engine's `LoadedRun` (experiment entry, validated config, summary, lazily loaded model)."""

    # ----- what the run is -----
    @property
    def name(self) -> str:
        return self.loaded.experiment.name

    @property
    def experiment(self) -> Any:
        """The registry entry (topic, paper, metric, direction, references, presets)."""
        return self.loaded.experiment

    @property
    def family(self) -> str:
        return self.loaded.experiment.family

    @property
    def preset(self) -> str:
        return self.loaded.preset

    @property
    def seed(self) -> int:
        return self.loaded.seed

    @property
    def run_dir(self) -> Path:
        return Path(self.loaded.run_dir)

    @property
    def config(self) -> Any:
        """The validated config (a dataclass: `r.config.lr`)."""
        return self.loaded.config

    # ----- what it measured -----
    @property
    def summary(self) -> dict[str, Any]:
        return self.loaded.summary

    @property
    def metrics(self) -> dict[str, float]:
        return self.loaded.metrics

    @property
    def timings(self) -> dict[str, float]:
        return self.loaded.timings

    @property
    def facts(self) -> dict[str, Any]:
        return self.loaded.facts

    @property
    def primary_metric(self) -> str:
        return self.summary.get("primary_metric", self.experiment.metric)

    @property
    def references(self) -> list[dict[str, Any]]:
        return list(self.summary.get("references", []))

    @functools.cached_property
    def history(self) -> History:
        from dldojo.engine.files import read_jsonl

        return History(read_jsonl(self.run_dir / "metrics.jsonl"))

    @property
    def figures(self) -> list[Path]:
        """The PNG figures the run wrote (figures/*.png), sorted by name."""
        return sorted((self.run_dir / "figures").glob("*.png"))

    @property
    def report_path(self) -> Path | None:
        path = self.run_dir / "report.html"
        return path if path.exists() else None

    @property
    def model(self) -> Any:
        """The trained model (`nn.Module` in eval mode) when the experiment declares how to rebuild it."""
        return self.loaded.model

    # ----- actions -----
    @property
    def actions(self) -> tuple[str, ...]:
        """The names of this run's actions (its family's commands as methods)."""
        return tuple(_family_actions(self.family))

    def _action(self, spec: str) -> Callable[..., Any]:
        """The action declared as `spec` ("module:function") bound to this run, with its own signature and doc."""
        from dldojo.engine.family import action

        function = action(spec)

        def call(*args: Any, **kwargs: Any) -> Any:
            with _matplotlib_backend_kept():
                return function(self.loaded, *args, **kwargs)

        functools.update_wrapper(call, function)
        parameters = list(inspect.signature(function).parameters.values())[1:]  # without the run
        call.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        del call.__wrapped__
        return call

    def __getattr__(self, name: str) -> Any:
        loaded = self.__dict__.get("loaded")
        if name.startswith("_") or loaded is None:
            raise AttributeError(name)
        own = _family_actions(loaded.experiment.family)
        if name in own:
            return self._action(own[name])
        from dldojo.engine.family import families

        elsewhere = sorted(f.name for f in families() if name in f.actions)
        if elsewhere:
            offered = ", ".join(own) or "none"
            raise UnknownAction(f"{name} is an action of the {' / '.join(elsewhere)} family; this {self.name} run "
                                f"({self.family}) offers: {offered}.")
        raise AttributeError(f"'Result' object has no attribute {name!r}."
                             + (f" Actions of this run: {', '.join(own)}." if own else ""))

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.actions})

    # ----- views -----
    def _value(self, metric: str) -> float | None:
        from dldojo.engine.reload import summary_value

        return summary_value(self.summary, metric)

    def _metric_rows(self) -> list[dict[str, Any]]:
        """One row per metric: this run's value next to the references (and the target) for that metric."""
        refs: dict[str, list[str]] = {}
        for ref in self.references:
            refs.setdefault(ref["metric"], []).append(f"{ref['value']:g} ({ref['source']})")
        target = self.summary.get("target")
        if target is not None:
            sign = "<=" if self.summary.get("direction") == "min" else ">="
            refs.setdefault(self.primary_metric, []).append(f"target {sign} {target:g} (full preset)")
        names = list(dict.fromkeys([self.primary_metric, *self.metrics, *refs]))
        return [{"metric": name, "this run": self._value(name), "reference": "; ".join(refs.get(name, []))}
                for name in names if self._value(name) is not None]

    def __repr__(self) -> str:
        value = self._value(self.primary_metric)
        shown = f"{self.primary_metric} = {fmt(value)}" if value is not None else "no metrics"
        refs = [f"{r['value']:g}" for r in self.references if r["metric"] == self.primary_metric]
        ref = f" (reference {', '.join(refs)})" if refs else ""
        actions = f"; actions: {', '.join(self.actions)}" if self.actions else ""
        return f"<Result {self.name} [{self.preset}, seed {self.seed}]: {shown}{ref}; {self.run_dir}{actions}>"

    def html(self, lang: str = "en", figures: int = SHOWN_FIGURES) -> Html:
        """The notebook view (`lang="ja"`: Japanese comparison sentence and metric names); `figures` run
        figures are embedded after the training curves."""
        from dldojo.engine.lang import check_lang, comparison_sentence, metric_name

        lang = check_lang(lang)
        wall = self.timings.get("wall_seconds")
        threads = self.facts.get("threads")
        parts = [f"<h3>{html.escape(self.name)} <small>[{html.escape(self.preset)}, seed {self.seed}]</small></h3>",
                 f"<p>{html.escape(self.experiment.topic)}<br><code>{html.escape(str(self.run_dir))}</code>"
                 + (f" — {fmt(wall)} s, {threads} thread{'' if threads == 1 else 's'}" if wall is not None else "")
                 + "</p>"]
        sentence = comparison_sentence(self.summary, lang) if self.summary else ""
        if sentence:
            parts.append(f"<p>{html.escape(sentence)}</p>")
        rows = self._metric_rows()
        if lang == "ja":
            rows = [{"指標": metric_name(r["metric"], lang), "metric": r["metric"], "この実行": r["this run"],
                     "参照値": r["reference"]} for r in rows]
        parts.append(table_html(rows))
        with _matplotlib_backend_kept():
            from dldojo.engine.report import curves_png

            curves = curves_png(self.history.records, lang)
        images = [f"<img src='data:image/png;base64,{curves}' alt='training curves' style='max-width:100%'>"] \
            if curves else []
        images += [image_html(p, style="max-width:100%") for p in self.figures[:figures]]
        parts += images
        rest = [p.stem for p in self.figures[figures:]]
        if rest:
            parts.append(f"<p>more figures (<code>r.figures</code>): {html.escape(', '.join(rest))}</p>")
        if self.actions:
            parts.append(f"<p>actions: {html.escape(', '.join(f'r.{a}(...)' for a in self.actions))}</p>")
        return Html("".join(parts), title=f"{self.name} ({self.run_dir.name})")

    def _repr_html_(self) -> str:
        return str(self.html())


# ============================================================================ IPython / Jupyter


def _show_dojo_error(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> list[str]:
    """IPython's handler for DojoError: the message alone, as the CLI prints it (no traceback)."""
    stb = [f"{etype.__name__}: {value}"]
    show = getattr(shell, "_showtraceback", None)
    if show is not None:
        show(etype, value, stb)  # Jupyter: an error output holding this one line
    else:
        print(stb[0], file=sys.stderr)
    return stb


def _ipython_shell() -> Any:
    """The running IPython shell, or None (IPython is never imported here: if it runs, it is loaded)."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None


def install_ipython_handler() -> bool:
    """Inside a running IPython shell (Jupyter kernel, terminal IPython), show DojoErrors without a traceback.
    Does nothing outside IPython, or when another custom exception handler is already installed."""
    shell = _ipython_shell()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    if getattr(shell, "custom_exceptions", ()) not in ((), (DojoError,)):
        return False
    shell.set_custom_exc((DojoError,), _show_dojo_error)
    return True
