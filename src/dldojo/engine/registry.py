"""The experiment registry (timm's `create_model` spirit): each experiment file registers itself once.

An experiment declares who it is (name, curriculum topic, paper), what it trains on, how it is
configured (a dataclass plus `smoke` / `quick` / `full` presets), what it reports (primary metric and
direction) and what it is compared with (reference numbers). `run(ctx, cfg)` does the work and returns
the final metrics.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, Literal

from dldojo.engine.errors import DojoError, did_you_mean

PRESETS = ("smoke", "quick", "full")

# Modules that register experiments; a new family adds its modules here.
EXPERIMENT_MODULES = (
    "dldojo.recsys.collab",
    "dldojo.recsys.mf_sgd",
    "dldojo.recsys.autorec",
    "dldojo.rl.alphazero",
    "dldojo.text.seq2seq",
    "dldojo.text.transformer",
    "dldojo.rl.q_table",
    "dldojo.rl.dqn",
    "dldojo.rl.policy_gradient",
    "dldojo.rl.a3c",
    "dldojo.vision.classify",
    "dldojo.vision.transfer",
    "dldojo.vision.norm_study",
)


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

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "min" else a > b


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in _REGISTRY and _REGISTRY[experiment.name].run is not experiment.run:
        raise RuntimeError(f"experiment {experiment.name!r} registered twice")
    missing = set(PRESETS) - set(experiment.presets)
    if missing:
        raise RuntimeError(f"experiment {experiment.name!r} lacks presets {sorted(missing)}")
    _REGISTRY[experiment.name] = experiment
    return experiment


def load_all() -> dict[str, Experiment]:
    for module in EXPERIMENT_MODULES:
        importlib.import_module(module)
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Experiment:
    experiments = load_all()
    if name not in experiments:
        raise DojoError(
            f"unknown experiment {name!r}.{did_you_mean(name, experiments)} Run `dldojo list` to see all experiments."
        )
    return experiments[name]
