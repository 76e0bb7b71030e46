"""Engine v2: declared loop state, named RNG streams, summary sections, reload, sub-runs, plug-in families."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from dldojo.engine import registry
from dldojo.engine.errors import DojoError
from dldojo.engine.launch import run_experiment
from dldojo.engine.reload import load_run
from dldojo.engine.state import Streams, derive_seed, load_into, snapshot

ROOT = Path(__file__).resolve().parents[1]


def test_docs_example_runs_resumes_and_reloads(example_gan, resume_equal):
    summary = run_experiment("example-gan", preset="smoke", seed=1, quiet=True)
    assert set(summary) >= {"metrics", "timings", "facts"}
    assert list(summary["metrics"]) == ["eval_radius_error"]
    assert summary["metrics"]["eval_radius_error"] < 1.0  # the generator moved towards the ring
    assert summary["facts"]["generator_params"] == 2 * 64 + 64 + 64 * 2 + 2
    assert summary["timings"]["wall_seconds"] > 0 and summary["facts"]["threads"] >= 1
    resume_equal("example-gan", full=summary)
    run = load_run(summary["run_dir"])
    assert run.metrics == summary["metrics"] and run.config.steps == 200
    with torch.no_grad():
        assert run.model(torch.zeros(1, 2)).shape == (1, 2)


def test_state_containers_round_trip():
    lin = torch.nn.Linear(2, 2)
    for make in (dict, lambda **kw: types.SimpleNamespace(**kw),
                 lambda **kw: dataclasses.make_dataclass("S", ["model", "count"])(**kw)):
        state = make(model=lin, count=3)
        saved = snapshot(state)
        fresh = make(model=torch.nn.Linear(2, 2), count=0)
        load_into(fresh, saved)
        get = (lambda s, k: s[k]) if isinstance(fresh, dict) else getattr
        assert get(fresh, "count") == 3
        torch.testing.assert_close(get(fresh, "model").weight, lin.weight)


def test_state_mismatch_is_a_clear_error():
    with pytest.raises(DojoError, match="missing: b"):
        load_into({"a": 1, "b": 2}, {"a": 1})
    with pytest.raises(DojoError, match="not declared any more: c"):
        load_into({"a": 1}, {"a": 1, "c": 2})
    with pytest.raises(DojoError, match="does not fit"):
        load_into({"m": torch.nn.Linear(2, 2)}, {"m": torch.nn.Linear(3, 2).state_dict()})


def test_named_streams_are_stable_independent_and_checkpointable():
    assert derive_seed(0, "shuffle") == derive_seed(0, "shuffle") != derive_seed(1, "shuffle")
    assert derive_seed(0, "shuffle") != derive_seed(0, "dropout")
    assert derive_seed(0, "shuffle") == 0x6B100D559ECC8F39  # golden: a stream never silently changes
    a, b = Streams(5), Streams(5)
    a.numpy("x").random(10), torch.rand(5, generator=a.torch("y"))
    b.load_state_dict(a.state_dict())
    assert a.numpy("x").random() == b.numpy("x").random()
    assert torch.equal(torch.rand(3, generator=a.torch("y")), torch.rand(3, generator=b.torch("y")))
    # drawing from one stream leaves another where it was
    c, d = Streams(5), Streams(5)
    c.numpy("x").random(1000)
    assert c.numpy("other").random() == d.numpy("other").random()


def _needs_gan(ctx, cfg):
    source = ctx.requires("example-gan", preset="smoke", steps=cfg.steps)
    history = ctx.history("loss_g", run=source)
    ctx.add_facts(source=str(source.run_dir))
    return {"eval_source_error": source.metrics["eval_radius_error"], "eval_draw": torch.rand(1).item(),
            "train_logged": float(len(history["loss_g"]))}


@dataclasses.dataclass
class _NeedsConfig:
    steps: int = 200
    """Steps of the required example-gan run."""


def test_requires_runs_once_then_reuses_and_keeps_the_rng(example_gan, synthetic_data):
    registry.register(registry.Experiment(
        name="example-needs-gan", topic="t", paper="p", config_cls=_NeedsConfig,
        presets={"smoke": {}, "quick": {}, "full": {}}, run=_needs_gan, metric="eval_source_error",
        direction="min", environment="none"))
    try:
        first = run_experiment("example-needs-gan", preset="smoke", quiet=True, report=False)
        second = run_experiment("example-needs-gan", preset="smoke", quiet=True, report=False)
        other = run_experiment("example-needs-gan", preset="smoke", sets=["steps=100"], quiet=True, report=False)
    finally:
        registry._REGISTRY.pop("example-needs-gan", None)
    assert first["facts"]["source"] == second["facts"]["source"] != other["facts"]["source"]
    assert len(list(Path(first["facts"]["source"]).parent.iterdir())) == 2  # 200 and 100 steps
    assert first["metrics"] == second["metrics"]  # same draw whether the sub-run was trained here or found
    assert first["metrics"]["train_logged"] == 2  # logged at steps 100 and 200


def test_load_run_errors_are_one_line(example_gan, tmp_path):
    with pytest.raises(DojoError, match="not a dldojo run directory"):
        load_run(tmp_path)
    summary = run_experiment("example-gan", preset="smoke", quiet=True, report=False)
    run_dir = Path(summary["run_dir"])
    with pytest.raises(DojoError, match="needs a run of the vision family"):
        load_run(run_dir, family="vision")
    (run_dir / "model.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(DojoError, match="damaged"):
        load_run(run_dir).model
    (run_dir / "summary.json").unlink()
    with pytest.raises(DojoError, match="has not finished"):
        load_run(run_dir)
    (run_dir / "config.json").write_text("{")
    with pytest.raises(DojoError, match="damaged"):
        load_run(run_dir)


def test_load_run_refuses_weights_of_another_shape(example_gan):
    from safetensors.torch import save_file

    summary = run_experiment("example-gan", preset="smoke", quiet=True, report=False)
    save_file({"0.weight": torch.zeros(3, 3)}, str(Path(summary["run_dir"]) / "model.safetensors"))
    with pytest.raises(DojoError, match="does not fit example-gan"):
        load_run(summary["run_dir"]).model


def test_families_declare_themselves():
    from dldojo.engine.family import families

    assert {f.name for f in families()} >= {"recsys", "rl", "text", "vision"}
    experiments = registry.load_all()
    assert all(e.family for e in experiments.values())


def test_lower_layers_name_no_family():
    families = ("recsys", "rl", "text", "vision")
    for path in [*(ROOT / "src/dldojo/engine").glob("*.py"), ROOT / "src/dldojo/data/store.py",
                 ROOT / "src/dldojo/cli.py"]:
        text = path.read_text()
        named = [f for f in families if f"dldojo.{f}" in text]
        assert not named, f"{path.relative_to(ROOT)} names families {named}"


def test_import_contracts():
    """engine / data / nn name no family, families are independent, no import cycles (import-linter)."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_summary_json_is_written_atomically_and_runs_lists_broken_runs(example_gan):
    from dldojo.engine.launch import list_runs, runs_root

    summary = run_experiment("example-gan", preset="smoke", quiet=True, report=False)
    run_dir = Path(summary["run_dir"])
    assert json.loads((run_dir / "summary.json").read_text())["metrics"] == summary["metrics"]
    assert not list(run_dir.glob(".*.tmp"))
    (run_dir / "summary.json").write_text('{"metr')
    rows = [r for r in list_runs(runs_root()) if r["run_dir"] == str(run_dir)]
    assert rows and rows[0]["state"].startswith("broken")
