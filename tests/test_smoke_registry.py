"""Every registered experiment runs its smoke preset on tiny synthetic data (pytorch/examples' --dry-run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dldojo.data.fixtures import FIXTURES
from dldojo.engine import registry
from dldojo.engine.launch import run_experiment, summary_value

EXPERIMENTS = sorted(registry.load_all())


def test_registry_is_not_empty():
    assert {"collab-dot", "collab-bias", "collab-nn", "mf-sgd"} <= set(EXPERIMENTS)


SPLITS = ("test_", "dev_", "eval_", "train_", "val_")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_smoke_preset_and_resume(name, synthetic_data, resume_equal):
    """The smoke preset runs, writes its run directory, and an interrupted + resumed run equals it."""
    experiment = registry.get(name)
    assert set(experiment.datasets) <= set(FIXTURES), f"{name} uses a dataset without a synthetic fixture"
    summary = run_experiment(name, preset="smoke", quiet=True, seed=1)
    assert summary_value(summary, experiment.metric) is not None, f"primary metric {experiment.metric} not reported"
    assert all(math.isfinite(v) for v in summary["metrics"].values())
    unsplit = [k for k in summary["metrics"] if not k.startswith(SPLITS)]
    assert not unsplit, f"metric names without a split prefix {SPLITS}: {unsplit}"
    run_dir = Path(summary["run_dir"])
    for name_ in ("config.json", "metrics.jsonl", "summary.json", "report.html"):
        assert (run_dir / name_).exists(), name_
    assert json.loads((run_dir / "summary.json").read_text())["metrics"] == summary["metrics"]
    assert "<img" in (run_dir / "report.html").read_text()  # at least the training curves
    resume_equal(name, full=summary)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_declaration_is_complete(name):
    from dldojo.engine.config import field_docs

    experiment = registry.get(name)
    assert experiment.topic and experiment.paper
    assert experiment.datasets or experiment.environment, "declare the datasets or the environment it trains in"
    docs = field_docs(experiment.config_cls)
    import dataclasses

    undocumented = [f.name for f in dataclasses.fields(experiment.config_cls) if not docs.get(f.name)]
    assert not undocumented, f"config fields without a docstring: {undocumented}"
