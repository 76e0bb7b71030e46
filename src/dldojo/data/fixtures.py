"""Tiny synthetic stand-ins for datasets, for tests on machines without the real data.

Every dataset's registration names the function that writes its tiny copy (`Dataset.fixture`, next to
the loader it feeds, in the real file formats); this module only collects them, so it names no
dataset. A fixture folder holds `FIXTURE.json` with the sha256 of its own files. Because such a
manifest vouches for itself, the store honours it only when `DLDOJO_ALLOW_FIXTURES=1` (the test suite
sets it, see `tests/conftest.py`); the folder is then reported as synthetic, never mistaken for the
real dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dldojo.data.store import FIXTURE_MANIFEST, FIXTURES_ENV, all_datasets, write_manifest  # noqa: F401
from dldojo.engine.errors import DojoError, did_you_mean


def fixture_writers() -> dict[str, Callable[[Path], Path]]:
    """dataset name -> function(root) that writes its tiny synthetic copy, for every registered dataset
    that has one (the registry-wide smoke test checks that every dataset an experiment uses has one)."""
    return {name: ds.fixture for name, ds in all_datasets().items() if ds.fixture is not None}


def make_all(root: Path, names: list[str] | tuple[str, ...] | None = None) -> Path:
    """Write the fixtures of `names` (default: every dataset that has one) under `root`; returns `root`."""
    writers = fixture_writers()
    for name in names if names is not None else writers:
        if name not in writers:
            raise DojoError(f"no synthetic fixture for dataset {name!r}.{did_you_mean(name, writers)}")
        writers[name](Path(root))
    return Path(root)


def __getattr__(name: str):
    if name == "FIXTURES":  # `fixtures.FIXTURES`: derived from the registered datasets when asked for
        return fixture_writers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
