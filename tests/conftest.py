"""Shared fixtures: a synthetic data root, an isolated runs folder, and the real data when available."""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make 2-thread runs crawl when the 2 cores are shared (measured: a 1 s
# seq2seq smoke test took 43 s under load); sleeping waiters change no number. Set before torch starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path

import pytest

from dldojo.data import fixtures

REAL_DATA = os.environ.get("DLDOJO_DATA", "")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """Every dataset's tiny synthetic copy. Their FIXTURE.json manifests vouch for themselves, so the store
    honours them only with DLDOJO_ALLOW_FIXTURES=1: set here for the rest of the session (tests that check
    the refusal unset it with monkeypatch)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(fixtures.FIXTURES_ENV, "1")
        yield fixtures.make_all(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture
def synthetic_data(synthetic_root, monkeypatch, tmp_path) -> Path:
    """DLDOJO_DATA -> tiny synthetic datasets only; offline; runs and cache under tmp_path."""
    monkeypatch.setenv("DLDOJO_DATA", str(synthetic_root))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DLDOJO_RUNS", str(tmp_path / "runs"))
    return synthetic_root


@pytest.fixture
def real_data(monkeypatch, tmp_path) -> Path:
    if not REAL_DATA:
        pytest.skip("set DLDOJO_DATA to the real datasets to run this test")
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    monkeypatch.setenv("DLDOJO_RUNS", str(tmp_path / "runs"))
    return Path(REAL_DATA.split(os.pathsep)[0])


# ----- resume equality, for any experiment -----
TIMING_KEYS = ("wall", "seconds", "per_second", "img_s", "_rate_s")


def logged_steps(run_dir) -> list[dict]:
    """metrics.jsonl without its timings (wall clock, seconds, rates): what must repeat exactly."""
    from dldojo.engine.files import read_jsonl

    return [{k: v for k, v in r.items() if not any(t in k for t in TIMING_KEYS)}
            for r in read_jsonl(Path(run_dir) / "metrics.jsonl")]


def assert_resume_equal(name: str, preset: str = "smoke", sets: list[str] = (), seed: int = 1,
                        stop: int | None = None, full: dict | None = None) -> dict:
    """Interrupt a run with a real SIGINT at step `stop` (default: half its last logged step), resume it, and
    check that its metrics and log equal those of the uninterrupted run `full` (run here when not given)."""
    from dldojo.engine.errors import RunInterrupted
    from dldojo.engine.launch import run_experiment
    from dldojo.engine.run import INTERRUPT_ENV

    if full is None:
        full = run_experiment(name, preset=preset, sets=list(sets), seed=seed, quiet=True, report=False)
    if stop is None:
        steps = [r["step"] for r in logged_steps(full["run_dir"])]
        stop = max(1, max(steps, default=2) // 2)
    before = set(Path(os.environ["DLDOJO_RUNS"], name).iterdir())
    os.environ[INTERRUPT_ENV] = str(stop)
    try:
        with pytest.raises(RunInterrupted):
            run_experiment(name, preset=full["preset"], sets=list(sets), seed=full["seed"], quiet=True,
                           report=False)
    finally:
        del os.environ[INTERRUPT_ENV]
    (interrupted,) = set(Path(os.environ["DLDOJO_RUNS"], name).iterdir()) - before
    resumed = run_experiment(resume=interrupted, quiet=True, report=False)
    assert resumed["metrics"] == full["metrics"], f"{name}: resumed at step {stop}, metrics differ"
    assert logged_steps(resumed["run_dir"]) == logged_steps(full["run_dir"]), f"{name}: logs differ after resume"
    return resumed


@pytest.fixture
def resume_equal():
    """`resume_equal(name, preset="smoke", sets=(), seed=1, stop=None, full=None)`: see assert_resume_equal."""
    return assert_resume_equal


@pytest.fixture
def example_gan(synthetic_data):
    """docs/example_gan.py (the README's example experiment) registered for one test, removed afterwards."""
    import importlib.util

    from dldojo.engine import registry

    spec = importlib.util.spec_from_file_location("example_gan", Path(__file__).parents[1] / "docs" / "example_gan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    registry._REGISTRY.pop("example-gan", None)
