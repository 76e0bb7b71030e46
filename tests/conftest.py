"""Shared fixtures: a synthetic data root, an isolated runs folder, and the real data when available."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dldojo.data import fixtures

REAL_DATA = os.environ.get("DLDOJO_DATA", "")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return fixtures.make_all(tmp_path_factory.mktemp("synthetic-data"))


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
