"""The experiment registry (timm's `create_model` spirit): each experiment file registers itself once.

An experiment declares who it is (name, curriculum topic, paper), what it trains on, how it is
configured (a dataclass plus `smoke` / `quick` / `full` presets), what it reports (primary metric and
direction) and what it is compared with (reference numbers). `run(ctx, cfg)` does the work and returns
the final metrics. Families declare their experiment modules (`engine.family`); importing one registers
its experiments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from dldojo.engine import family
from dldojo.engine.errors import DojoError, did_you_mean

PRESETS = ("smoke", "quick", "full")



@dataclasses.dataclass(frozen=True)
class Reference:
    """A published or course number this experiment is compared with."""

    value: float
    source: str
    note: str = ""
    metric: str = ""  # defaults to the experiment's primary metric


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    topic: str
    paper: str
    config_cls: type
    presets: dict[str, dict[str, Any]]
    run: Callable[..., dict[str, float]]
    metric: str
    direction: Literal["min", "max"]
    datasets: tuple[str, ...] = ()
    environment: str = ""
    """What the experiment trains in when it has no dataset: a gymnasium env id or a game."""
    references: tuple[Reference, ...] = ()
    target: float | None = None  # the target for the full preset, on `metric`
    family: str = ""
    threads: int | None = None
    """Default torch threads; 1 for models too small to gain from parallel kernels (None = all cores)."""
    build_model: Callable[..., Any] | None = None
    """`build_model(cfg, run)` -> the trained model's `nn.Module` with fresh weights, where `run` is the
    `LoadedRun` (for artefacts such as a vocabulary); `engine.load_run` loads the saved weights into it."""

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "min" else a > b


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in _REGISTRY and _REGISTRY[experiment.name].run is not experiment.run:
        raise RuntimeError(f"experiment {experiment.name!r} registered twice")
    missing = set(PRESETS) - set(experiment.presets)
    if missing:
        raise RuntimeError(f"experiment {experiment.name!r} lacks presets {sorted(missing)}")
    if not experiment.family:
        experiment = dataclasses.replace(experiment, family=family.family_of_module(experiment.run.__module__))
    _REGISTRY[experiment.name] = experiment
    return experiment


def load_all() -> dict[str, Experiment]:
    """Every experiment of every family (families declare their experiment modules, see `engine.family`)."""
    family.import_modules("experiments")
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Experiment:
    experiments = load_all()
    if name not in experiments:
        raise DojoError(
            f"unknown experiment {name!r}.{did_you_mean(name, experiments)} Run `dldojo list` to see all experiments."
        )
    return experiments[name]
