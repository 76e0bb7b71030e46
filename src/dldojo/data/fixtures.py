"""Tiny synthetic stand-ins for datasets, for tests on machines without the real data.

A fixture folder holds `FIXTURE.json` with the sha256 of its own files, so the store still verifies
it (and reports it as synthetic) while never mistaking it for the real dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dldojo.data import enja, images
from dldojo.data.store import FIXTURE_MANIFEST, sha256_of


def write_manifest(folder: Path) -> None:
    files = {p.relative_to(folder).as_posix(): sha256_of(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != FIXTURE_MANIFEST}
    (folder / FIXTURE_MANIFEST).write_text(json.dumps({"synthetic": True, "files": files}, indent=1))


def make_movielens(root: Path, n_users: int = 40, n_items: int = 60, n_ratings: int = 1200, seed: int = 0) -> Path:
    """A rank-2 taste model with noise, in the official ml-100k file formats (u.item in Latin-1)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "ml-100k"
    folder.mkdir(parents=True, exist_ok=True)
    taste_u, taste_i = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    pairs = rng.choice(n_users * n_items, size=n_ratings, replace=False)
    users, items = pairs // n_items, pairs % n_items
    users[:n_users] = np.arange(n_users)  # every user and item appears at least once
    items[:n_items] = np.arange(n_items)
    score = 3 + (taste_u[users] * taste_i[items]).sum(1) + 0.3 * rng.normal(size=n_ratings)
    ratings = np.clip(np.rint(score), 1, 5).astype(int)
    lines = [f"{u + 1}\t{i + 1}\t{r}\t{880000000 + k}" for k, (u, i, r) in enumerate(zip(users, items, ratings))]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    titles = [f"Film {i + 1} (199{i % 10})" for i in range(n_items)]
    titles[0] = "Café Müller (1995)"  # exercises Latin-1 decoding
    item_lines = [f"{i + 1}|{t}|01-Jan-1995||http://example.invalid|" + "|".join("0" * 19) for i, t in enumerate(titles)]
    (folder / "u.item").write_bytes(("\n".join(item_lines) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("".join(f"{u + 1}|30|M|other|00000\n" for u in range(n_users)))
    fold_of = rng.permutation(n_ratings) % 5
    for k in range(5):
        (folder / f"u{k + 1}.base").write_text("".join(lines[j] + "\n" for j in range(n_ratings) if fold_of[j] != k))
        (folder / f"u{k + 1}.test").write_text("".join(lines[j] + "\n" for j in range(n_ratings) if fold_of[j] == k))
    write_manifest(folder)
    return folder


# dataset name -> function(root) that writes a tiny synthetic copy; every registered dataset needs one
# so that the registry-wide smoke test can run each experiment without the real data.
FIXTURES = {"ml-100k": make_movielens, "small_parallel_enja": enja.make_fixture, **images.FIXTURES}


def make_all(root: Path, names: list[str] | tuple[str, ...] | None = None) -> Path:
    for name in names if names is not None else FIXTURES:
        FIXTURES[name](root)
    return Path(root)
