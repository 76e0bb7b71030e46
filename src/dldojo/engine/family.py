"""Families plug in: each family package declares its experiments, datasets and commands in one place.

A family is a sub-package of `dldojo` (or of any installed distribution, through the entry-point group
`dldojo.families`) whose `__init__` defines ``FAMILY = Family(...)``::

    FAMILY = Family(
        name="speech",
        experiments=("dldojo.speech.ctc",),          # modules that call `register(Experiment(...))`
        datasets=("dldojo.speech.datasets",),        # modules that call `register_dataset(...)`
        commands="dldojo.speech.cli",                # module with `add_commands(subparsers)`
        actions={"transcribe": "dldojo.speech.actions:transcribe"},  # what a finished run can do in Python
    )

The engine, the data store and the top-level CLI find families by package discovery and name none of
them; modules are given as strings so that discovery imports nothing heavy.

An action is the Python form of a family command: `function(run, *args, **kwargs)` with `run` the finished
run's `engine.reload.LoadedRun`; `dldojo.load(run_dir).transcribe("a.wav")` calls it (`dldojo.api.Result`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

from dldojo.engine.errors import DojoError

ENTRY_POINT_GROUP = "dldojo.families"


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    """Short name, e.g. 'vision' (shown by `dldojo list --family`)."""
    experiments: tuple[str, ...] = ()
    """Modules that register this family's experiments."""
    datasets: tuple[str, ...] = ()
    """Modules that register the datasets this family brings."""
    commands: str = ""
    """Module defining `add_commands(subparsers)` for the family's own commands ('' = none)."""
    actions: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    """What a finished run of this family can do from Python: action name -> "module:function", called as
    `function(loaded_run, *args, **kwargs)` (e.g. the function behind the family's command)."""


@functools.cache
def families() -> tuple[Family, ...]:
    """Every declared family: the `dldojo.*` sub-packages with a FAMILY, then entry points."""
    import dldojo

    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(dldojo.__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        family = getattr(importlib.import_module(f"dldojo.{info.name}"), "FAMILY", None)
        if isinstance(family, Family):
            found[family.name] = family
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            family = entry.load()
        except Exception as exc:  # a broken plug-in must not take the whole CLI down
            raise DojoError(f"the installed dldojo family plug-in {entry.name!r} ({entry.value}) failed to "
                            f"load: {exc}. Uninstall or fix that package.") from None
        if isinstance(family, Family):
            found.setdefault(family.name, family)
    return tuple(found.values())


def import_modules(kind: str) -> None:
    """Import every family's modules of one kind ('experiments' or 'datasets'), which register themselves."""
    for family in families():
        for module in getattr(family, kind):
            importlib.import_module(module)


def family_of_module(module: str) -> str:
    """The family whose package holds `module` (by declaration), '' if none."""
    for family in families():
        if module in family.experiments or module.startswith(f"dldojo.{family.name}."):
            return family.name
    return ""


def action(spec: str) -> Callable[..., Any]:
    """The function an action declaration "module:function" names (importing its module now)."""
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise DojoError(f"the action {spec!r} cannot be loaded ({exc}); the family declaring it is broken.") from None
